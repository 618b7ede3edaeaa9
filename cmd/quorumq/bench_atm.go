package main

import (
	"crypto/tls"

	"github.com/spf13/cobra"

	"github.com/quorumq/quorumq/atm"
	"github.com/quorumq/quorumq/clientlib"
	"github.com/quorumq/quorumq/internal/secure"
)

func init() { benchCmd.AddCommand(newBenchATMCmd()) }

func newBenchATMCmd() *cobra.Command {
	var (
		cfg   atm.BenchConfig
		creds clientCredentials
	)
	cmd := &cobra.Command{
		Use:     "atm",
		Short:   "Concurrent random transfers against a running ATM group; prints transfers/s and p50/p99",
		Example: `  quorumq bench atm --http 127.0.0.1:8001,127.0.0.1:8002,127.0.0.1:8003 --clients 64 --duration 10s`,
		Args:    cobra.NoArgs,
		PreRunE: func(cmd *cobra.Command, _ []string) error {
			return envFallback(cmd)
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			token, ca, err := clientlib.ResolveCredentials(creds.token, creds.ca, creds.dataDir)
			if err != nil {
				return err
			}
			cfg.Token = token
			if ca != "" {
				pool, err := secure.LoadPool(ca)
				if err != nil {
					return err
				}
				cfg.TLS = &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: pool}
			}
			_, err = atm.Bench(cmd.Context(), cfg, cmd.OutOrStdout())
			return err
		},
	}
	f := cmd.Flags()
	f.StringSliceVar(&cfg.Addrs, "http", []string{"127.0.0.1:8001"}, "HTTP addresses of the ATMs (clients are spread over them)")
	f.IntVar(&cfg.Clients, "clients", 64, "concurrent clients, each with one transfer in flight")
	f.DurationVar(&cfg.Duration, "duration", 10e9, "how long to run")
	f.IntVar(&cfg.Accounts, "accounts", 100, "accounts to transfer between (bench-NNN, funded at the start)")
	creds.register(f)
	return cmd
}
