package main

import (
	"fmt"
	"os"
	"runtime"
	"time"

	"github.com/spf13/cobra"

	"github.com/quorumq/quorumq/broker"
	"github.com/quorumq/quorumq/internal/secure"
	"github.com/quorumq/quorumq/internal/timerslack"
	"github.com/quorumq/quorumq/internal/transport"
)

func init() { subcommands = append(subcommands, newBrokerCmd) }

func newBrokerCmd() *cobra.Command {
	var (
		cfg      broker.Config
		consul   consulFlags
		logLevel string
		pprofAt  string
		procs    int
		slack    time.Duration
		sec      securityFlags
	)
	cmd := &cobra.Command{
		Use:   "broker",
		Short: "Run a broker: partition replicas, each a Raft group, behind an HTTP API",
		Long: `Run a broker. Managers create partition replicas on it over HTTP; every partition
is a Raft group over the brokers that hold it, all sharing this process's one Raft
listener and, in --data-dir, one write-ahead log (every partition's Raft log) and two
bolt files (messages and offsets; Raft term/vote and snapshots). A restarted broker
reopens every replica it held.`,
		Example: `  quorumq broker --id b1 --data-dir /tmp/b1 --raft 127.0.0.1:7201 --http 127.0.0.1:8201 --consul 127.0.0.1:8500`,
		Args:    cobra.NoArgs,
		PreRunE: func(cmd *cobra.Command, _ []string) error { return envFallback(cmd) },
		RunE: func(cmd *cobra.Command, _ []string) error {
			var err error
			if cfg.Logger, err = newLogger(os.Stderr, logLevel); err != nil {
				return err
			}
			if procs < 0 {
				return fmt.Errorf("--gomaxprocs %d: give 0 (Go's default) or a positive number of cores", procs)
			}
			if procs > 0 {
				runtime.GOMAXPROCS(procs)
			}
			if slack < 0 || slack > time.Second {
				return fmt.Errorf("--timer-slack %s: give 0 (the kernel's default) up to 1s", slack)
			}
			// First, before anything is started: it may re-execute the program.
			if err := timerslack.Apply(slack); err != nil {
				cfg.Logger.Info("timer slack left as it is", "want", slack, "error", err)
			}
			runtime.UnlockOSThread() // held for Apply by main's init
			if cfg.Security, err = sec.config(cmd.Context(), secure.RoleBroker, cfg.ID, false, cfg.Logger); err != nil {
				return err
			}
			cfg.DataDir = dataDirFor(cfg.DataDir, cfg.ID)
			if cfg.Discovery, err = consul.ifSet(nil, cfg.Logger); err != nil {
				return err
			}
			servePprof(pprofAt, cfg.Logger)
			cfg.Out = cmd.OutOrStdout()
			return broker.Run(cmd.Context(), cfg)
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.ID, "id", "", "this broker's id (required), e.g. b1")
	f.StringVar(&cfg.DataDir, "data-dir", "", "the broker's write-ahead log and bolt files (default .quorumq/<id>)")
	f.StringVar(&cfg.RaftAddr, "raft", "127.0.0.1:7201", "host:port of the Raft listener all partitions share")
	f.StringVar(&cfg.HTTPAddr, "http", "127.0.0.1:8201", "host:port of the HTTP API")
	consul.register(f, "", "host:port of a Consul agent's HTTP API (register as quorumq-broker)")
	f.IntVar(&cfg.MaxMessageBytes, "max-message-bytes", broker.DefaultMaxMessageBytes, "largest message accepted (at most 4 MiB less 64 KiB: a message fits in one Raft entry)")
	f.IntVar(&cfg.RaftMaxConns, "raft-max-conns", transport.DefaultMaxConns, "incoming connections the Raft port holds at once")
	f.DurationVar(&cfg.HTTPReadTimeout, "http-read-timeout", broker.DefaultHTTPReadTimeout, "close an HTTP connection that takes longer to send a request (or stays idle)")
	f.StringVar(&logLevel, "log-level", "warn", "debug, info, warn or error")
	pprofFlag(f, &pprofAt)
	f.DurationVar(&slack, "timer-slack", 20*time.Millisecond, "how late (at most) the kernel may wake this process for a timer, to serve the timers of many idle partitions in one wake-up (Linux; re-executes the broker once at start); 0 keeps the kernel's default")
	f.IntVar(&procs, "gomaxprocs", 0, "cores the Go scheduler runs on (GOMAXPROCS); 0 is Go's default, every core. Give 1 when more server processes than cores share the machine: idle schedulers then spin less")
	sec.register(f, false)
	f.DurationVar(&cfg.RetentionInterval, "retention-interval", broker.DefaultRetentionInterval, "how often a partition's leader deletes what its topic's retention no longer keeps")
	f.IntVar(&cfg.ScrubRate, "scrub-rate", broker.DefaultScrubRate, "bytes per second the background verifier reads back from disk (message bodies and Raft log records) to find damage; 0 disables it")
	_ = cmd.MarkFlagRequired("id")
	cmd.AddCommand(newBrokerVerifyCmd())
	cmd.AddCommand(newBrokerAdminCmds()...)
	return cmd
}

func newBrokerVerifyCmd() *cobra.Command {
	var dataDir string
	cmd := &cobra.Command{
		Use:   "verify",
		Short: "Check a stopped broker's files for storage damage",
		Long: `Check a stopped broker's --data-dir without changing it: every Raft log record in
the write-ahead log (replayed as at start, compared with what it had synced) and every
message body against its checksum. Prints what it checked and every damaged range;
exits 0 when nothing is damaged, 1 otherwise. A running broker finds and repairs the
same damage itself (see --scrub-rate).`,
		Example: `  quorumq broker verify --data-dir .quorumq/b1`,
		Args:    cobra.NoArgs,
		PreRunE: func(cmd *cobra.Command, _ []string) error { return envFallback(cmd) },
		RunE: func(cmd *cobra.Command, _ []string) error {
			n, err := broker.Verify(dataDir, cmd.OutOrStdout())
			if err != nil {
				return err
			}
			if n > 0 {
				return fmt.Errorf("%d damaged ranges in %s", n, dataDir)
			}
			fmt.Fprintln(cmd.OutOrStdout(), "no damage found")
			return nil
		},
	}
	cmd.Flags().StringVar(&dataDir, "data-dir", "", "the stopped broker's data directory (required)")
	_ = cmd.MarkFlagRequired("data-dir")
	return cmd
}
