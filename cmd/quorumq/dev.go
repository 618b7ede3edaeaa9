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
		Short: "Run a local cluster (Consul with its UI, PostgreSQL, managers and brokers) until Ctrl-C",
		Args:  cobra.NoArgs,
		PreRunE: func(cmd *cobra.Command, _ []string) error {
			return envFallback(cmd)
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			return devcluster.Run(cmd.Context(), cfg, cmd.OutOrStdout())
		},
	}
	cmd.AddCommand(newDevControlCmds()...)
	f := cmd.Flags()
	f.BoolVar(&cfg.Insecure, "insecure", false, "run every process without TLS and tokens (default: a CA, certificates and an admin token in --data-dir)")
	f.StringVar(&cfg.DataDir, "data-dir", "./.quorumq", "directory for all state, logs and cluster.json (kept between runs)")
	f.StringVar(&cfg.ConsulHTTP, "consul-http", "127.0.0.1:8500", "Consul HTTP API and UI address")
	f.IntVar(&cfg.PostgresPort, "postgres-port", 5432, "PostgreSQL port on 127.0.0.1")
	f.IntVar(&cfg.Managers, "managers", 3, "managers to run (m1, m2, ...), each with a database of its own")
	f.IntVar(&cfg.Brokers, "brokers", 5, "brokers to run (b1, b2, ...)")
	f.IntVar(&cfg.ManagerRaftPort, "manager-raft-port", devcluster.DefaultManagerRaftPort, "Raft port of m1; m2 gets the next one, and so on")
	f.IntVar(&cfg.ManagerHTTPPort, "manager-http-port", devcluster.DefaultManagerHTTPPort, "REST API port of m1; m2 gets the next one, and so on")
	f.IntVar(&cfg.BrokerRaftPort, "broker-raft-port", devcluster.DefaultBrokerRaftPort, "Raft port of b1; b2 gets the next one, and so on")
	f.IntVar(&cfg.BrokerHTTPPort, "broker-http-port", devcluster.DefaultBrokerHTTPPort, "HTTP port of b1; b2 gets the next one, and so on")
	f.IntVar(&cfg.PprofPort, "pprof-port", 0, "when set, every manager and broker serves its Go profiles (net/http/pprof) on 127.0.0.1: m1 on this port, the other managers and then the brokers on the next ones")
	return cmd
}
