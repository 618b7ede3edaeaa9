package main

import (
	"github.com/spf13/cobra"

	"github.com/quorumq/quorumq/cmd/quorumq/devcluster"
)

func init() { subcommands = append(subcommands, newDevCmd) }

func newDevCmd() *cobra.Command {
	cfg := devcluster.Config{}
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run a local cluster (Consul with its UI, PostgreSQL, and the quorumq services) until Ctrl-C",
		Args:  cobra.NoArgs,
		PreRunE: func(cmd *cobra.Command, _ []string) error {
			return envFallback(cmd)
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			return devcluster.Run(cmd.Context(), cfg, cmd.OutOrStdout())
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.DataDir, "data-dir", "./.quorumq", "directory for all state, logs and cluster.json (kept between runs)")
	f.StringVar(&cfg.ConsulHTTP, "consul-http", "127.0.0.1:8500", "Consul HTTP API and UI address")
	f.IntVar(&cfg.PostgresPort, "postgres-port", 5432, "PostgreSQL port on 127.0.0.1")
	return cmd
}
