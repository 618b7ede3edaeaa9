package main

import (
	"errors"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/quorumq/quorumq/internal/brokerbench"
	"github.com/quorumq/quorumq/internal/secure"
)

func init() {
	benchCmd.AddCommand(newBenchProduceCmd(), newBenchConsumeCmd(), newBenchPartitionsCmd(), newBenchIdleCmd())
}

func brokerBenchFlags(cmd *cobra.Command, cfg *brokerbench.Config) {
	f := cmd.Flags()
	f.StringSliceVar(&cfg.Brokers, "brokers", nil, "HTTP addresses of 3+ running brokers (default: start 3)")
	f.IntVar(&cfg.Partitions, "partitions", 1, "partitions to create (RF 3)")
	f.IntVar(&cfg.Clients, "clients", 1, "concurrent clients, one request in flight each")
	f.IntVar(&cfg.Size, "size", 1024, "message size in bytes")
	f.IntVar(&cfg.Batch, "batch", 1, "messages per request")
	f.DurationVar(&cfg.Duration, "duration", 10*time.Second, "how long producers run")
	f.Int64Var(&cfg.Msgs, "msgs", 0, "stop producing after this many messages (consume: fill exactly this many), if before --duration")
	f.StringVar(&cfg.ProfileDir, "profile", "", "write each started broker's CPU profile of the run to this directory (<id>.cpu.pprof)")
	f.BoolVar(&cfg.Insecure, "insecure", false, "start the brokers without TLS (default: with a CA made in the bench's directory)")
}

func brokerBenchCmd(use, short, example string, run func(cmd *cobra.Command, cfg brokerbench.Config) error) *cobra.Command {
	var (
		cfg brokerbench.Config
		sec securityFlags
	)
	cmd := &cobra.Command{
		Use: use, Short: short, Example: example, Args: cobra.NoArgs,
		PreRunE: func(cmd *cobra.Command, _ []string) error { return envFallback(cmd) },
		RunE: func(cmd *cobra.Command, _ []string) error {
			bin, err := os.Executable()
			if err != nil {
				return err
			}
			cfg.Binary, cfg.Out = bin, cmd.OutOrStdout()
			if len(cfg.Brokers) > 0 && !cfg.Insecure {
				// Running brokers are reached as a cluster member (a client/NAME certificate).
				if sec.ca == "" {
					return errors.New("--brokers: give --ca, --cert and --key of a client certificate (quorumq cert create-node --name client/bench), or --insecure")
				}
				node, err := secure.LoadNode(sec.ca, sec.cert, sec.key)
				if err != nil {
					return err
				}
				cfg.TLS = node.ClientConfig(secure.RoleBroker)
			}
			return run(cmd, cfg)
		},
	}
	brokerBenchFlags(cmd, &cfg)
	cmd.Flags().StringVar(&sec.ca, "ca", "", "with --brokers: the cluster CA certificate")
	cmd.Flags().StringVar(&sec.cert, "cert", "", "with --brokers: a certificate of the CA (role client)")
	cmd.Flags().StringVar(&sec.key, "key", "", "the key of --cert")
	return cmd
}

func newBenchProduceCmd() *cobra.Command {
	return brokerBenchCmd("produce", "Produce to partitions (RF 3); prints msgs/s, MB/s, p50/p99 ack latency",
		"  quorumq bench produce --partitions 8 --clients 64 --size 1024 --duration 20s",
		func(cmd *cobra.Command, cfg brokerbench.Config) error {
			_, err := brokerbench.Produce(cmd.Context(), cfg)
			return err
		})
}

func newBenchConsumeCmd() *cobra.Command {
	return brokerBenchCmd("consume", "Fill partitions (RF 3) for --duration (or with --msgs), then drain them; prints msgs/s, latency and broker CPU",
		"  quorumq bench consume --partitions 8 --clients 8 --batch 1000 --msgs 200000",
		func(cmd *cobra.Command, cfg brokerbench.Config) error {
			_, err := brokerbench.Consume(cmd.Context(), cfg)
			return err
		})
}

func newBenchPartitionsCmd() *cobra.Command {
	var idle time.Duration
	cmd := brokerBenchCmd("partitions", "Many idle partitions: time to all-led, idle CPU/RSS, cold restart, broker failover",
		"  quorumq bench partitions --partitions 1000 --idle 20s",
		func(cmd *cobra.Command, cfg brokerbench.Config) error {
			return brokerbench.Partitions(cmd.Context(), cfg, idle)
		})
	cmd.Flags().DurationVar(&idle, "idle", 10*time.Second, "how long to measure idle CPU")
	return cmd
}

func newBenchIdleCmd() *cobra.Command {
	var idle time.Duration
	cmd := brokerBenchCmd("idle", "Idle partitions: each broker's CPU (% of a core, from /proc) and RSS while nothing is sent",
		"  quorumq bench idle --partitions 1000 --idle 60s",
		func(cmd *cobra.Command, cfg brokerbench.Config) error {
			return brokerbench.Idle(cmd.Context(), cfg, idle)
		})
	cmd.Flags().DurationVar(&idle, "idle", 60*time.Second, "how long to measure idle CPU")
	return cmd
}
