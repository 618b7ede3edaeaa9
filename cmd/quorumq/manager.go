package main

import (
	"log/slog"
	"os"

	"github.com/spf13/cobra"

	"github.com/quorumq/quorumq/discovery"
	"github.com/quorumq/quorumq/election"
	"github.com/quorumq/quorumq/internal/secure"
	"github.com/quorumq/quorumq/internal/transport"
	"github.com/quorumq/quorumq/manager"
)

func init() { subcommands = append(subcommands, newManagerCmd) }

func newManagerCmd() *cobra.Command {
	var (
		cfg        manager.Config
		consul     consulFlags
		peers      []string
		logLevel   string
		sec        securityFlags
		pgPassFile string
		pprofAt    string
	)
	cmd := &cobra.Command{
		Use:   "manager",
		Short: "Run one manager: metadata (Raft + PostgreSQL), the public REST API, broker health",
		Long: `Run one manager. The managers form a Raft group; its leader is the write manager
(tagged "leader" in Consul). Each manager materialises the metadata in its own PostgreSQL
database (the one named in --postgres, created when missing) and serves the public REST
API; writes on a read manager are forwarded to the write manager.`,
		Example: `  quorumq manager --id m1 --data-dir /tmp/m1 --raft 127.0.0.1:7101 --http 127.0.0.1:8101 \
    --bootstrap-expect 3 --consul 127.0.0.1:8500 \
    --postgres 'postgres://postgres@127.0.0.1:5432/quorumq_m1?sslmode=disable'`,
		Args: cobra.NoArgs,
		PreRunE: func(cmd *cobra.Command, _ []string) error {
			return envFallback(cmd)
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			var err error
			if cfg.Logger, err = newLogger(os.Stderr, logLevel); err != nil {
				return err
			}
			if cfg.Security, err = sec.config(cmd.Context(), secure.RoleManager, cfg.ID, true, cfg.Logger); err != nil {
				return err
			}
			if cfg.PostgresDSN, err = withPasswordFile(cfg.PostgresDSN, pgPassFile); err != nil {
				return err
			}
			cfg.DataDir = dataDirFor(cfg.DataDir, cfg.ID)
			if cfg.Discovery, cfg.Peers, err = managerDiscovery(&consul, peers, cfg.Logger); err != nil {
				return err
			}
			servePprof(pprofAt, cfg.Logger)
			m, err := manager.New(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			return m.Run(cmd.Context())
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.ID, "id", "", "this manager's id (required), e.g. m1")
	f.StringVar(&cfg.DataDir, "data-dir", "", "Raft log and snapshots (default .quorumq/<id>)")
	f.StringVar(&cfg.RaftAddr, "raft", "127.0.0.1:7101", "host:port of the Raft listener")
	f.StringVar(&cfg.HTTPAddr, "http", "127.0.0.1:8101", "host:port of the REST API")
	f.IntVar(&cfg.BootstrapExpect, "bootstrap-expect", 3, "form the group once this many managers are found")
	f.StringVar(&cfg.PostgresDSN, "postgres", "", "PostgreSQL DSN; its database is this manager's own (required)")
	consul.register(f, "", "host:port of a Consul agent's HTTP API")
	f.StringSliceVar(&peers, "peers", nil, "static manager list id=raftaddr,... (instead of --consul)")
	f.DurationVar(&cfg.BrokerGrace, "broker-grace", 0, "declare a broker dead after it is critical this long (default 5s)")
	f.IntVar(&cfg.Replication, "replication", 3, "replicas per partition of a new topic")
	f.IntVar(&cfg.Partitions, "partitions", 1, "partitions of a new topic when the request gives none")
	f.IntVar(&cfg.MaxMoves, "max-moves", manager.DefaultMaxMoves, "most replica moves and leadership transfers the write manager carries out at once (decommission, re-replication, balance); it starts with 4 and adds one per move done, halving at each failure")
	f.IntVar(&cfg.RaftMaxConns, "raft-max-conns", transport.DefaultMaxConns, "incoming connections the Raft port holds at once")
	f.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	f.StringVar(&pgPassFile, "postgres-password-file", "", "file holding the password of --postgres's user (instead of one in the DSN)")
	pprofFlag(f, &pprofAt)
	sec.register(f, true)
	_ = cmd.MarkFlagRequired("id")
	_ = cmd.MarkFlagRequired("postgres")
	return cmd
}

// managerDiscovery is Consul when --consul is given; else a static list, with --peers
// as the initial Raft members.
func managerDiscovery(consul *consulFlags, peers []string, logger *slog.Logger) (discovery.Backend, []election.Peer, error) {
	if b, err := consul.ifSet(peers, logger); b != nil || err != nil {
		return b, nil, err
	}
	members, err := parsePeers(peers)
	if err != nil {
		return nil, nil, err
	}
	return discovery.NewStatic(), members, nil
}
