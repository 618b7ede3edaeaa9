package main

import (
	"log/slog"
	"os"

	"github.com/spf13/cobra"

	"github.com/quorumq/quorumq/atm"
	"github.com/quorumq/quorumq/discovery"
	"github.com/quorumq/quorumq/internal/secure"
	"github.com/quorumq/quorumq/internal/transport"
)

func init() { subcommands = append(subcommands, newATMCmd) }

func newATMCmd() *cobra.Command {
	var (
		cfg       atm.Config
		consul    consulFlags
		peers     []string
		terminal  bool
		logLevel  string
		dataDirIn string
		sec       securityFlags
	)
	cmd := &cobra.Command{
		Use:   "atm",
		Short: "Run one ATM of the ATM network: a Raft member with a terminal and an HTTP API",
		Long: `Run one ATM. All ATMs share one replicated bank (accounts name -> balance).

Peers are found in Consul (--consul) or given as a static list (--peers id=raftaddr,...).
Commands are read from stdin: deposit NAME AMOUNT, withdraw NAME AMOUNT, balance NAME,
transfer FROM TO AMOUNT, accounts, status, help, quit. On a terminal you get line editing
and history, and the log goes to <data-dir>/atm.log; otherwise one command per line with
plain answers, and the end of stdin leaves the ATM serving until SIGINT or SIGTERM.
--terminal=false serves only the HTTP API until SIGTERM.`,
		Example: `  quorumq atm --id atm1 --data-dir /tmp/atm1 --raft 127.0.0.1:7001 --http 127.0.0.1:8001 \
    --peers atm1=127.0.0.1:7001,atm2=127.0.0.1:7002,atm3=127.0.0.1:7003`,
		Args: cobra.NoArgs,
		PreRunE: func(cmd *cobra.Command, _ []string) error {
			return envFallback(cmd)
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg.Logs = atm.NewLogWriter(os.Stderr)
			var err error
			if cfg.Logger, err = newLogger(cfg.Logs, logLevel); err != nil {
				return err
			}
			if cfg.Security, err = sec.config(cmd.Context(), secure.RoleATM, cfg.ID, true, cfg.Logger); err != nil {
				return err
			}
			cfg.DataDir = dataDirFor(dataDirIn, cfg.ID)
			if cfg.Discovery, err = atmDiscovery(&consul, peers, cfg.Logger); err != nil {
				return err
			}
			if terminal {
				cfg.In, cfg.Out = os.Stdin, cmd.OutOrStdout()
			} else {
				cfg.Out = cmd.OutOrStdout()
			}
			return atm.Run(cmd.Context(), cfg)
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.ID, "id", "", "this ATM's id (required), e.g. atm1")
	f.StringVar(&dataDirIn, "data-dir", "", "Raft log and snapshots (default .quorumq/<id>)")
	f.StringVar(&cfg.RaftAddr, "raft", "127.0.0.1:7001", "host:port of the Raft listener")
	f.StringVar(&cfg.HTTPAddr, "http", "127.0.0.1:8001", "host:port of the HTTP API")
	f.IntVar(&cfg.BootstrapExpect, "bootstrap-expect", 3, "form the group once this many ATMs are found")
	consul.register(f, "", "host:port of a Consul agent's HTTP API (find peers there)")
	f.StringSliceVar(&peers, "peers", nil, "static peer list id=raftaddr,... (instead of --consul)")
	f.BoolVar(&cfg.Stale, "stale", false, "answer reads from local state (faster, may be behind)")
	f.BoolVar(&terminal, "terminal", true, "read commands from stdin")
	f.DurationVar(&cfg.OpTimeout, "op-timeout", 0, "give up on an operation after this long (default 4s)")
	f.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	f.IntVar(&cfg.Lanes, "lanes", 0, "group commit: Raft entries in flight from this ATM (default 4)")
	f.IntVar(&cfg.MaxBatch, "max-batch", 0, "group commit: operations per Raft entry (default 256)")
	f.IntVar(&cfg.RaftMaxConns, "raft-max-conns", transport.DefaultMaxConns, "incoming connections the Raft port holds at once")
	sec.register(f, true)
	_ = cmd.MarkFlagRequired("id")
	return cmd
}

// atmDiscovery is Consul when --consul is given, else a static list from --peers.
func atmDiscovery(consul *consulFlags, peers []string, logger *slog.Logger) (discovery.Backend, error) {
	if b, err := consul.ifSet(peers, logger); b != nil || err != nil {
		return b, err
	}
	members, err := parsePeers(peers)
	if err != nil {
		return nil, err
	}
	instances := make([]discovery.Instance, 0, len(members))
	for _, p := range members {
		instances = append(instances, discovery.Instance{Service: discovery.ServiceATM, ID: p.ID,
			Meta: map[string]string{discovery.MetaRaftAddr: p.Addr}})
	}
	return discovery.NewStatic(instances...), nil
}
