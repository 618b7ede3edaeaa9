package atm

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/term"

	"github.com/quorumq/quorumq/atm/bank"
	"github.com/quorumq/quorumq/discovery"
	"github.com/quorumq/quorumq/election"
	"github.com/quorumq/quorumq/internal/secure"
	"github.com/quorumq/quorumq/internal/transport"
)

// Group is the Raft group every ATM belongs to.
const Group = "atm"

// Config is one ATM process.
type Config struct {
	ID              string
	DataDir         string
	RaftAddr        string // host:port of this process's Raft listener
	HTTPAddr        string // host:port of the HTTP API
	BootstrapExpect int
	// Discovery finds the other ATMs (Consul, or a discovery.Static list) and is where
	// this ATM registers itself.
	Discovery discovery.Backend
	Stale     bool // serve reads from the local state without a read barrier

	// In, if set, is read as the terminal: a tty gets line editing and history, anything
	// else is read as one command per line. Answers go to Out. Run returns at `quit`, and
	// at end of input on a tty; at the end of any other input, and without In, the ATM
	// serves HTTP and Raft until ctx ends.
	In  io.Reader
	Out io.Writer
	// Logs, if set, is the writer behind Logger; on a tty it is pointed at
	// <DataDir>/atm.log, so the terminal shows only the bank.
	Logs   *LogWriter
	Logger *slog.Logger

	OpTimeout time.Duration // per operation; without quorum it fails after this (default 4s)
	Lanes     int           // entries in flight from this ATM (default 4)
	MaxBatch  int           // operations per entry (default 256)
	// RaftMaxConns caps the Raft port's incoming connections (default
	// transport.DefaultMaxConns).
	RaftMaxConns int
	// Security is mutual TLS on the Raft port, TLS on the HTTP API and the tokens it
	// requires; nil runs insecure.
	Security *secure.Config
}

func (c *Config) defaults() error {
	if c.ID == "" || c.DataDir == "" || c.RaftAddr == "" || c.HTTPAddr == "" || c.Discovery == nil {
		return errors.New("atm: Config needs ID, DataDir, RaftAddr, HTTPAddr and Discovery")
	}
	if c.Out == nil {
		c.Out = io.Discard
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.OpTimeout <= 0 {
		c.OpTimeout = 4 * time.Second
	}
	if c.Lanes <= 0 {
		c.Lanes = 4
	}
	if c.MaxBatch <= 0 {
		c.MaxBatch = 256
	}
	return nil
}

// Run starts the ATM, joins (or bootstraps) the group, prints a `ready ...` line on Out,
// and runs until ctx ends or the terminal quits.
func Run(ctx context.Context, cfg Config) error {
	if err := cfg.defaults(); err != nil {
		return err
	}
	log := cfg.Logger.With("atm", cfg.ID)
	out, restore, src, err := openTerminal(cfg)
	if err != nil {
		return err
	}
	defer restore()

	// HTTP first: /healthz must pass before the group exists, since peers are found
	// among healthy instances.
	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("atm: http listen: %w", err)
	}
	ln = cfg.Security.ListenPublic(ln)
	srv := newServer(log, cfg.Security.Auth(false))
	go func() {
		if err := srv.serve(ln); err != nil {
			log.Error("http server stopped", "err", err)
		}
	}()
	stopHTTP := sync.OnceFunc(func() { shutdownHTTP(srv, log) })
	defer stopHTTP()

	tcfg := transport.Config{BindAddr: cfg.RaftAddr, Logger: log, MaxConns: cfg.RaftMaxConns}
	tcfg.ServerTLS, tcfg.ClientTLS, tcfg.PeerID = cfg.Security.Raft()
	mux, err := transport.New(tcfg)
	if err != nil {
		return fmt.Errorf("atm: raft listen: %w", err)
	}
	defer mux.Close()

	httpAddr := ln.Addr().String()
	reg := discovery.Registration{
		Instance: discovery.Instance{Service: discovery.ServiceATM, ID: cfg.ID, Addr: httpAddr,
			Meta: map[string]string{discovery.MetaRaftAddr: string(mux.Addr()), discovery.MetaHTTPAddr: httpAddr}},
		HealthURL:       cfg.Security.Scheme() + "://" + httpAddr + "/healthz",
		CheckInterval:   time.Second,
		DeregisterAfter: time.Minute,
	}
	if err := cfg.Discovery.Register(ctx, reg); err != nil {
		return fmt.Errorf("atm: register: %w", err)
	}
	deregister := sync.OnceFunc(func() {
		dctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if err := cfg.Discovery.Deregister(dctx, discovery.ServiceATM, cfg.ID); err != nil {
			log.Warn("deregister", "err", err)
		}
	})
	defer deregister()

	b := bank.New()
	node, err := election.Open(ctx, election.Config{
		Group: Group, ID: cfg.ID, DataDir: cfg.DataDir, Mux: mux, FSM: b,
		Timing: election.DefaultTiming(), BootstrapExpect: cfg.BootstrapExpect,
		Discover: election.DiscoverService(cfg.Discovery, discovery.ServiceATM), Logger: log,
	})
	if err != nil {
		if ctx.Err() != nil {
			return nil // stopped while waiting for peers: a normal shutdown
		}
		return fmt.Errorf("atm: join group: %w", err)
	}
	defer node.Close()

	bctx, stopBatcher := context.WithCancel(context.Background())
	a := &ATM{id: cfg.ID, node: node, bank: b, stale: cfg.Stale, timeout: cfg.OpTimeout,
		batch: newBatcher(node.Apply, cfg.ID, cfg.Lanes, cfg.MaxBatch, cfg.OpTimeout, log)}
	a.batch.start(bctx)
	defer func() { stopBatcher(); a.batch.wait() }()
	srv.setATM(a)
	// On the way out, leave discovery and finish in-flight HTTP requests while the
	// batcher and the node can still answer them.
	defer stopHTTP()
	defer deregister()

	var tagger sync.WaitGroup
	tctx, stopTagger := context.WithCancel(ctx)
	tagger.Add(1)
	go func() { defer tagger.Done(); tagLeader(tctx, node, cfg.Discovery, cfg.ID, log) }()
	defer func() { stopTagger(); tagger.Wait() }()

	leader, err := waitLeader(ctx, node)
	if err != nil {
		return nil // ctx ended before the group formed: a normal shutdown
	}
	fmt.Fprintf(out, "ready id=%s leader=%s raft=%s http=%s\n", cfg.ID, leader, mux.Addr(), httpAddr)
	log.Info("ATM ready", "leader", leader, "raft", mux.Addr(), "http", httpAddr)

	if src == nil {
		<-ctx.Done()
		return nil
	}
	t := &Terminal{atm: a, in: *src, out: out}
	done := make(chan error, 1)
	// The reader may stay blocked on stdin after ctx ends; it is not waited for.
	go func() { done <- t.Run(ctx) }()
	select {
	case err := <-done:
		if !errors.Is(err, io.EOF) {
			return err // quit (nil) or a read error
		}
		if src.interactive() {
			return nil // Ctrl-D
		}
		// A server started with stdin at /dev/null (nohup, &, systemd) must not stop
		// because nobody types: only a person's Ctrl-D (or quit) ends the ATM.
		log.Warn("stdin closed; serving HTTP and Raft until SIGINT or SIGTERM (type quit to stop, or use --terminal=false)")
		<-ctx.Done()
		return nil
	case <-ctx.Done():
		return nil
	}
}

// openTerminal picks the terminal mode. On a tty it switches to raw mode (restored by
// the returned func) and sends the log to a file.
func openTerminal(cfg Config) (io.Writer, func(), *lineSource, error) {
	if cfg.In == nil {
		return cfg.Out, func() {}, nil, nil
	}
	f, ok := cfg.In.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		src := plainSource(cfg.In)
		return cfg.Out, func() {}, &src, nil
	}
	// A person's terminal shows the bank; the consensus log goes to a file.
	logPath := filepath.Join(cfg.DataDir, "atm.log")
	closeLogs := func() {}
	if cfg.Logs != nil {
		lf, err := openLogFile(logPath)
		if err != nil {
			return nil, nil, nil, err
		}
		cfg.Logs.Set(lf)
		closeLogs = func() { cfg.Logs.Set(os.Stderr); _ = lf.Close() }
	}
	old, err := term.MakeRaw(int(f.Fd()))
	if err != nil {
		closeLogs()
		return nil, nil, nil, fmt.Errorf("atm: terminal: %w", err)
	}
	prompt := cfg.ID + "> "
	t := term.NewTerminal(struct {
		io.Reader
		io.Writer
	}{cfg.In, cfg.Out}, prompt)
	src := ttySource(t, prompt)
	fmt.Fprintln(t, "ATM", cfg.ID, "- type help for commands; quit or Ctrl-D stops it")
	if cfg.Logs != nil {
		fmt.Fprintln(t, "logs:", logPath)
	}
	restore := func() {
		closeLogs()
		t.SetBracketedPasteMode(false) // ttySource turned it on; the shell may not want it
		_ = term.Restore(int(f.Fd()), old)
	}
	return t, restore, &src, nil
}

func openLogFile(path string) (*os.File, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("atm: log file: %w", err)
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("atm: log file: %w", err)
	}
	return f, nil
}

func shutdownHTTP(srv *server, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := srv.shutdown(ctx); err != nil {
		log.Warn("http shutdown", "err", err)
	}
}

func waitLeader(ctx context.Context, node *election.Node) (string, error) {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		if p := node.Leader(); p.ID != "" {
			return p.ID, nil
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-tick.C:
		}
	}
}

// tagLeader keeps the discovery "leader" tag on this ATM, and on no other, while it
// leads, so operators (and the Consul UI) can see which ATM leads.
func tagLeader(ctx context.Context, node *election.Node, b discovery.Backend, id string, log *slog.Logger) {
	stop := func() {}
	defer func() { stop() }()
	ch := node.LeaderChanges()
	for {
		var lead bool
		select {
		case <-ctx.Done():
			return
		case l, ok := <-ch:
			if !ok {
				return
			}
			lead = l
		}
		stop()
		stop = func() {}
		if lead {
			hctx, cancel := context.WithCancel(ctx)
			done := make(chan struct{})
			go func() {
				defer close(done)
				discovery.HoldTag(hctx, b, discovery.ServiceATM, id, discovery.TagLeader, log)
			}()
			stop = func() { cancel(); <-done }
		}
	}
}

// LogWriter is an io.Writer whose destination can be switched while loggers use it.
type LogWriter struct {
	mu sync.Mutex
	w  io.Writer
}

// NewLogWriter returns a LogWriter writing to w.
func NewLogWriter(w io.Writer) *LogWriter { return &LogWriter{w: w} }

// Set points the writer at w.
func (l *LogWriter) Set(w io.Writer) {
	l.mu.Lock()
	l.w = w
	l.mu.Unlock()
}

func (l *LogWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
