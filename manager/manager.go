// Package manager is a quorumq manager: one member of the managers' Raft group (whose
// leader is the write manager), its metadata materialised in PostgreSQL (pgstore), the
// public REST API, routing of produce/consume to partition leaders, and, on the write
// manager, broker health and re-replication.
package manager

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/quorumq/quorumq/discovery"
	"github.com/quorumq/quorumq/election"
	"github.com/quorumq/quorumq/internal/secure"
	"github.com/quorumq/quorumq/internal/transport"
	"github.com/quorumq/quorumq/manager/meta"
	"github.com/quorumq/quorumq/manager/pgstore"
)

// Group is the Raft group name of the managers.
const Group = "managers"

// Config is what a manager needs to run.
type Config struct {
	ID       string
	DataDir  string
	RaftAddr string // listen address of the process's Raft transport
	HTTPAddr string // listen address of the REST API
	// AdvertiseHTTP / AdvertiseRaft are the addresses others use (default: the listen
	// addresses, with the real port when it was 0).
	AdvertiseHTTP, AdvertiseRaft string
	BootstrapExpect              int
	Peers                        []election.Peer // explicit initial members instead of discovery
	PostgresDSN                  string
	// Discovery registers this manager and finds the others and the brokers; nil means a
	// process-local static list (a single manager, or Peers).
	Discovery discovery.Backend
	// BrokerGrace is how long a broker may be critical before it is declared dead.
	BrokerGrace time.Duration
	// Replication and Partitions are the defaults for new topics.
	Replication, Partitions int
	// MaxMoves bounds the replica moves and leadership transfers the write manager
	// carries out at once (default DefaultMaxMoves).
	MaxMoves int
	// RaftMaxConns caps the Raft port's incoming connections (default
	// transport.DefaultMaxConns).
	RaftMaxConns int
	Logger       *slog.Logger
	// Security is mutual TLS on the Raft port and to the brokers, TLS on the REST API
	// and the tokens it requires; nil runs insecure.
	Security *secure.Config
}

func (c *Config) setDefaults() error {
	if c.ID == "" || c.DataDir == "" || c.PostgresDSN == "" {
		return errors.New("manager: id, data dir and postgres DSN are required")
	}
	if c.BrokerGrace <= 0 {
		c.BrokerGrace = 5 * time.Second
	}
	if c.Replication <= 0 {
		c.Replication = 3
	}
	if c.Partitions <= 0 {
		c.Partitions = 1
	}
	if c.BootstrapExpect <= 0 && len(c.Peers) == 0 {
		c.BootstrapExpect = 1
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Discovery == nil {
		c.Discovery = discovery.NewStatic()
	}
	return nil
}

// Manager is one running manager.
type Manager struct {
	cfg     Config
	log     *slog.Logger
	store   *pgstore.Store
	mux     *transport.Mux
	app     *fiber.App
	httpLn  net.Listener
	brokers *brokerClient
	router  *router
	mover   atomic.Pointer[mover] // the write manager's, while it leads

	mu     sync.Mutex
	node   *election.Node  // nil until the group is joined
	noting map[string]bool // partitions whose new leader is being recorded
	// creating counts, by group, the openReplicas under way for it, and created is
	// when the last one ended: the survey leaves those groups alone (openReplicas).
	creating map[string]int
	created  map[string]time.Time

	httpAddr string
	life     context.Context // Run's: background work started by requests ends with it
	wg       sync.WaitGroup
}

// New opens the store and the listeners; Run then joins the group and serves.
func New(ctx context.Context, cfg Config) (*Manager, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	m := &Manager{cfg: cfg, log: cfg.Logger.With("manager", cfg.ID)}
	m.brokers = newBrokerClient(m.noteLeader)
	m.brokers.http.Secure(cfg.Security.BrokerClient(), "")
	m.router = newRouter(m)
	freshRaft := !fileExists(filepath.Join(cfg.DataDir, "raft", "raft.db"))
	store, err := pgstore.Open(ctx, cfg.PostgresDSN, m.log)
	if err != nil {
		return nil, err
	}
	m.store = store
	if freshRaft && store.AppliedIndex() > 0 {
		// The database outlived the Raft directory: its index means nothing to the new
		// log, which will be applied again from the start.
		m.log.Warn("raft directory is new but the database has state; resetting the database")
		if err := store.Reset(ctx); err != nil {
			store.Close()
			return nil, err
		}
	}
	tcfg := transport.Config{BindAddr: cfg.RaftAddr, AdvertiseAddr: cfg.AdvertiseRaft, Logger: m.log, MaxConns: cfg.RaftMaxConns}
	tcfg.ServerTLS, tcfg.ClientTLS, tcfg.PeerID = cfg.Security.Raft()
	m.mux, err = transport.New(tcfg)
	if err != nil {
		store.Close()
		return nil, err
	}
	m.httpLn, err = net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		m.mux.Close()
		store.Close()
		return nil, fmt.Errorf("manager: listen http: %w", err)
	}
	m.httpLn = cfg.Security.ListenPublic(m.httpLn)
	m.httpAddr = cfg.AdvertiseHTTP
	if m.httpAddr == "" {
		m.httpAddr = m.httpLn.Addr().String()
	}
	m.app = m.newApp()
	return m, nil
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// HTTPAddr is the advertised address of the REST API.
func (m *Manager) HTTPAddr() string { return m.httpAddr }

// Node is the manager's Raft member, nil before Run has joined the group.
func (m *Manager) Node() *election.Node {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.node
}

// Run serves the API, registers in discovery, joins the managers' group and, while
// this manager leads, runs the write manager's duties. It returns when ctx ends.
func (m *Manager) Run(ctx context.Context) error {
	m.life = ctx
	defer m.close()
	serveErr := make(chan error, 1)
	go func() { serveErr <- m.app.Listener(m.httpLn) }()

	inst := discovery.Instance{
		Service: discovery.ServiceManager, ID: m.cfg.ID, Addr: m.httpAddr,
		Meta: map[string]string{discovery.MetaRaftAddr: string(m.mux.Addr()), discovery.MetaHTTPAddr: m.httpAddr},
	}
	reg := discovery.Registration{Instance: inst, HealthURL: m.cfg.Security.Scheme() + "://" + m.httpAddr + "/healthz",
		CheckInterval: time.Second, DeregisterAfter: time.Minute}
	if err := m.cfg.Discovery.Register(ctx, reg); err != nil {
		return fmt.Errorf("manager: register in discovery: %w", err)
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		m.cfg.Discovery.Deregister(dctx, discovery.ServiceManager, m.cfg.ID)
	}()

	node, err := election.Open(ctx, election.Config{
		Group: Group, ID: m.cfg.ID, DataDir: filepath.Join(m.cfg.DataDir, "raft"), Mux: m.mux,
		FSM: m.store, Timing: managerTiming(),
		Peers: m.cfg.Peers, BootstrapExpect: m.cfg.BootstrapExpect,
		Discover: election.DiscoverService(m.cfg.Discovery, discovery.ServiceManager),
		Logger:   m.log,
	})
	if err != nil {
		return fmt.Errorf("manager: join the managers' group: %w", err)
	}
	m.mu.Lock()
	m.node = node
	m.mu.Unlock()
	m.log.Info("manager running", "http", m.httpAddr, "raft", m.mux.Addr())

	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		m.followLeadership(ctx, node)
	}()
	select {
	case <-ctx.Done():
		return nil
	case err := <-serveErr:
		return fmt.Errorf("manager: http server: %w", err)
	}
}

func (m *Manager) close() {
	m.app.ShutdownWithTimeout(2 * time.Second)
	if n := m.Node(); n != nil {
		if n.IsLeader() {
			// A planned stop hands the write manager's role over at once instead of
			// leaving the others to time out first.
			if err := n.Raft().LeadershipTransfer().Error(); err != nil {
				m.log.Warn("leadership transfer on shutdown", "err", err)
			}
		}
		n.Close()
	}
	m.wg.Wait()
	m.mux.Close()
	m.store.Close()
}

// noteLeader records, in the background, a partition leader found by routing, so that
// the next request goes straight to it. One recording per partition at a time.
func (m *Manager) noteLeader(p meta.Partition, id string) {
	g := p.GroupName()
	m.mu.Lock()
	if m.noting == nil {
		m.noting = map[string]bool{}
	}
	busy := m.noting[g]
	m.noting[g] = true
	m.mu.Unlock()
	if busy {
		return
	}
	go func() {
		defer func() {
			m.mu.Lock()
			delete(m.noting, g)
			m.mu.Unlock()
		}()
		ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
		defer cancel()
		if _, err := m.apply(ctx, meta.SetLeader{Topic: p.Topic, Partition: p.Index, Leader: id}); err != nil {
			m.log.Debug("record partition leader", "group", g, "leader", id, "err", err)
		}
	}()
}

// apply runs a metadata command through Raft (forwarded when this is a read manager).
func (m *Manager) apply(ctx context.Context, c meta.Command) (meta.Result, error) {
	n := m.Node()
	if n == nil {
		return meta.Result{}, errNotReady
	}
	out, err := n.Apply(ctx, meta.Encode(c))
	if err != nil {
		return meta.Result{}, err
	}
	return meta.DecodeResult(out)
}

// read runs fn on state that reflects every write completed before the call.
func (m *Manager) read(ctx context.Context, fn func(*meta.State) error) error {
	n := m.Node()
	if n == nil {
		return errNotReady
	}
	if err := n.ReadBarrier(ctx); err != nil {
		return err
	}
	var err error
	m.store.Read(func(s *meta.State) { err = fn(s) })
	return err
}

// managerTiming is DefaultTiming with a leader lease and heartbeat timeout of a
// second: with 2,000 partitions being created or moved on a 2-core machine at a load
// of 30-50, the write manager missed DefaultTiming's 250 ms lease every few seconds
// and stepped down, and each step-down cut short every move in flight (a new write
// manager plans them again from the start). A dead write manager is now replaced
// after 1-2 s instead of 0.5-1 s.
func managerTiming() election.Timing {
	t := election.DefaultTiming()
	t.HeartbeatTimeout, t.ElectionTimeout, t.LeaderLeaseTimeout = time.Second, time.Second, time.Second
	return t
}
