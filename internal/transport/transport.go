// Package transport carries the Raft traffic of every group of a process over
// one TCP listener and one shared connection per peer process. Each request
// names its group, so a thousand groups cost a thousand map entries rather
// than a thousand listeners and connection pools (which measured at 64 % of a
// core per process, idle). It also carries the Node's own RPCs (forwarded
// applies, joins, read-index) on the same connections.
package transport

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
)

var (
	// ErrUnknownGroup: the peer process has no open transport (and no handler) for the group.
	ErrUnknownGroup = errors.New("transport: unknown raft group")
	// ErrUnknownMethod: the peer knows the group but has no handler for the method.
	ErrUnknownMethod = errors.New("transport: no handler for method")
	// ErrClosed: the Mux or the group transport was closed.
	ErrClosed = errors.New("transport: closed")
)

// Config configures a Mux.
type Config struct {
	BindAddr      string // host:port to listen on; port 0 picks a free one
	AdvertiseAddr string // address peers dial; defaults to the listener's address
	Logger        *slog.Logger
	// Timeout bounds dialing, each Raft RPC and each write; InstallSnapshot
	// scales it by size like raft's NetworkTransport. Default 10s.
	Timeout time.Duration
	// MaxRPCsInFlight is the AppendEntries pipeline depth per follower, as in
	// raft.NetworkTransportConfig; below 2 disables pipelining. Default 2.
	MaxRPCsInFlight int
	// CoalesceDelay is how long heartbeats and empty AppendEntries may wait
	// to share a write with other groups' traffic, when several groups send
	// them to the same peer. Default 2ms; negative disables.
	CoalesceDelay time.Duration
	// MaxConns caps the incoming connections held at once; more are closed
	// as soon as they are accepted. Default DefaultMaxConns.
	MaxConns int
	// IdleTimeout closes an incoming connection on which no frame starts for
	// this long (a peer's connections carry heartbeats many times a second).
	// Outgoing connections with no call for a quarter of it are closed by
	// their dialer first, so a request is never cut by the peer's deadline.
	// Default DefaultIdleTimeout.
	IdleTimeout time.Duration
	// ServerTLS and ClientTLS, when set, make every connection mutual TLS: accepted
	// connections complete a handshake with ServerTLS before anything is read, dialed
	// ones with ClientTLS.
	ServerTLS, ClientTLS *tls.Config
	// PeerID maps the verified peer of an accepted TLS connection to the raft server ID
	// it may send requests as (any other ID drops the connection); an error refuses the
	// connection. Required with ServerTLS.
	PeerID func(tls.ConnectionState) (string, error)
}

// Defaults of Config.MaxConns and Config.IdleTimeout.
const (
	DefaultMaxConns    = 1024
	DefaultIdleTimeout = 2 * time.Minute
)

// Mux is the process's single Raft listener and its connections to peers.
type Mux struct {
	log         *slog.Logger
	ln          net.Listener
	addr        raft.ServerAddress
	timeout     time.Duration
	maxInFlight int
	coalesce    time.Duration
	idle        time.Duration
	maxConns    int64
	incoming    atomic.Int64 // accepted connections not yet closed
	refusing    atomic.Bool  // at maxConns: logged once per episode
	serverTLS   *tls.Config
	clientTLS   *tls.Config
	peerID      func(tls.ConnectionState) (string, error)

	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup // accept loop and connection goroutines

	mu       sync.RWMutex
	groups   map[string]*GroupTransport
	handlers map[string]map[string]Handler // group -> method -> handler
	peers    map[laneKey]*peer
	conns    map[*conn]struct{}
	closed   bool

	faults atomic.Pointer[Faults] // tests' link faults; nil: none (faults.go)
}

// New listens on cfg.BindAddr immediately.
func New(cfg Config) (*Mux, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.MaxRPCsInFlight == 0 {
		cfg.MaxRPCsInFlight = 2
	}
	if cfg.CoalesceDelay == 0 {
		cfg.CoalesceDelay = 2 * time.Millisecond
	}
	if cfg.MaxConns <= 0 {
		cfg.MaxConns = DefaultMaxConns
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	if cfg.ServerTLS != nil && cfg.PeerID == nil {
		return nil, errors.New("transport: ServerTLS needs PeerID")
	}
	ln, err := net.Listen("tcp", cfg.BindAddr)
	if err != nil {
		return nil, fmt.Errorf("transport: listen on %q: %w", cfg.BindAddr, err)
	}
	addr := cfg.AdvertiseAddr
	if addr == "" {
		addr = ln.Addr().String()
		if tcp, ok := ln.Addr().(*net.TCPAddr); ok && tcp.IP.IsUnspecified() {
			ln.Close()
			return nil, fmt.Errorf("transport: bind address %q is not reachable by peers; set AdvertiseAddr", cfg.BindAddr)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	m := &Mux{
		log:         cfg.Logger,
		ln:          ln,
		addr:        raft.ServerAddress(addr),
		timeout:     cfg.Timeout,
		maxInFlight: cfg.MaxRPCsInFlight,
		coalesce:    cfg.CoalesceDelay,
		idle:        cfg.IdleTimeout,
		maxConns:    int64(cfg.MaxConns),
		serverTLS:   cfg.ServerTLS,
		clientTLS:   cfg.ClientTLS,
		peerID:      cfg.PeerID,
		ctx:         ctx,
		cancel:      cancel,
		groups:      make(map[string]*GroupTransport),
		handlers:    make(map[string]map[string]Handler),
		peers:       make(map[laneKey]*peer),
		conns:       make(map[*conn]struct{}),
	}
	m.wg.Add(2)
	go m.acceptLoop()
	go m.reapLoop()
	if path := os.Getenv(FaultFileEnv); path != "" {
		m.wg.Add(1)
		go m.watchFaultFile(path)
	}
	return m, nil
}

// Addr is the address peers use to reach this process.
func (m *Mux) Addr() raft.ServerAddress { return m.addr }

// Transport opens the raft.Transport of one group. Close it to leave the Mux.
func (m *Mux) Transport(group string) (*GroupTransport, error) {
	if group == "" || len(group) > maxName {
		return nil, fmt.Errorf("transport: invalid group name %q", group)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, ErrClosed
	}
	if _, ok := m.groups[group]; ok {
		return nil, fmt.Errorf("transport: group %q already open on this process", group)
	}
	g := newGroupTransport(m, group)
	m.groups[group] = g
	return g, nil
}

// roundTrip sends one request to addr and waits for its response or error
// frame. from is the raft group sending, nil for Call (see conn.start).
func (m *Mux) roundTrip(ctx context.Context, addr raft.ServerAddress, ln lane, req []byte, mode sendMode, from *GroupTransport) (frame, error) {
	c, cl, id, err := m.begin(ctx, addr, ln, req, mode, from)
	if err != nil {
		return frame{}, err
	}
	select {
	case <-cl.done:
		if errors.Is(cl.err, errNoAnswer) {
			return frame{}, fmt.Errorf("transport: %s: %w", addr, cl.err)
		}
		if cl.err != nil {
			return frame{}, fmt.Errorf("transport: connection to %s: %w", addr, cl.err)
		}
		return cl.f, nil
	case <-ctx.Done():
		c.abandon(id, cl)
		if from == nil {
			c.send(cancelFrame(id)) // stop the handler too
		}
		if m.isClosed() {
			return frame{}, ErrClosed
		}
		return frame{}, fmt.Errorf("transport: call to %s: %w", addr, ctx.Err())
	}
}

// begin starts a call on the shared connection to addr, on a new one if the
// reaper just closed that one as idle.
func (m *Mux) begin(ctx context.Context, addr raft.ServerAddress, ln lane, req []byte, mode sendMode, from *GroupTransport) (*conn, *call, uint64, error) {
	for {
		c, err := m.dial(ctx, addr, ln)
		if err != nil {
			return nil, nil, 0, err
		}
		cl, id, err := c.start(req, mode, from)
		if errors.Is(err, errIdle) {
			continue
		}
		if err != nil {
			return nil, nil, 0, fmt.Errorf("transport: send to %s: %w", addr, err)
		}
		return c, cl, id, nil
	}
}

func remoteErr(addr raft.ServerAddress, group, method string, f frame) error {
	msg := string(f.payload)
	switch f.code {
	case codeUnknownGroup:
		return fmt.Errorf("%w %q at %s", ErrUnknownGroup, group, addr)
	case codeUnknownMethod:
		return fmt.Errorf("%w %q of group %q at %s", ErrUnknownMethod, method, group, addr)
	case codeShutdown:
		return fmt.Errorf("%w: group %q at %s: %s", ErrClosed, group, addr, msg)
	case codeRemote:
		return &RemoteError{Msg: msg}
	default:
		return errors.New(msg)
	}
}

// track registers c and its reader goroutine, unless the Mux is closed.
func (m *Mux) track(c *conn) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return false
	}
	m.conns[c] = struct{}{}
	m.wg.Add(1)
	return true
}

func (m *Mux) dropConn(c *conn) {
	m.mu.Lock()
	delete(m.conns, c)
	m.mu.Unlock()
}

func (m *Mux) isClosed() bool { return m.ctx.Err() != nil }

func (m *Mux) acceptLoop() {
	defer m.wg.Done()
	const maxDelay = time.Second
	var delay time.Duration
	for {
		nc, err := m.ln.Accept()
		if err != nil {
			if m.isClosed() {
				return
			}
			// EMFILE and friends: back off and keep serving the conns we have.
			delay = min(max(2*delay, 5*time.Millisecond), maxDelay)
			m.log.Error("raft transport: accept failed", "error", err, "retry_in", delay)
			select {
			case <-m.ctx.Done():
				return
			case <-time.After(delay):
			}
			continue
		}
		delay = 0
		if m.incoming.Add(1) > m.maxConns {
			m.incoming.Add(-1)
			nc.Close()
			if !m.refusing.Swap(true) {
				m.log.Warn("raft transport: connection limit reached, refusing new connections", "limit", m.maxConns)
			}
			continue
		}
		m.refusing.Store(false)
		m.wg.Add(1)
		go m.serveConn(nc)
	}
}

// reapLoop expires unanswered raft RPCs; a tenth of the timeout is precise
// enough and costs nothing measurable when idle.
func (m *Mux) reapLoop() {
	defer m.wg.Done()
	t := time.NewTicker(min(max(m.timeout/10, 10*time.Millisecond), time.Second))
	defer t.Stop()
	for {
		select {
		case <-m.ctx.Done():
			return
		case now := <-t.C:
			m.mu.RLock()
			conns := make([]*conn, 0, len(m.conns))
			for c := range m.conns {
				if c.outgoing {
					conns = append(conns, c)
				}
			}
			m.mu.RUnlock()
			for _, c := range conns {
				c.reap(now)
				c.closeIfIdle(now, m.idle/4)
			}
		}
	}
}

// serveConn checks the peer's certificate (with TLS) and the preamble of an
// incoming connection and then serves it. Until its first frame the conn has a small read buffer: a thousand
// connections that never get that far cost little.
func (m *Mux) serveConn(nc net.Conn) {
	defer m.wg.Done()
	defer m.incoming.Add(-1)
	nc.SetDeadline(time.Now().Add(m.timeout))
	peerID, nc, err := m.handshake(nc)
	if err != nil {
		m.log.Warn("raft transport: rejecting connection", "peer", nc.RemoteAddr().String(), "error", err)
		nc.Close()
		return
	}
	nc.SetWriteDeadline(time.Time{})
	r := bufio.NewReaderSize(nc, firstChunk)
	var got [len(preamble)]byte
	if _, err := io.ReadFull(r, got[:]); err != nil || string(got[:]) != preamble {
		m.log.Warn("raft transport: rejecting connection without a valid preamble", "peer", nc.RemoteAddr().String(), "error", err)
		nc.Close()
		return
	}
	c := newConn(m, nc, false) // its reader sets the next deadline
	c.peerID = peerID
	if !m.track(c) {
		nc.Close()
		return
	}
	c.readLoop(r, m.serve)
}

// handshake completes the server side of TLS, when configured, and returns the raft
// server ID the peer's certificate lets it speak as.
func (m *Mux) handshake(nc net.Conn) (string, net.Conn, error) {
	if m.serverTLS == nil {
		return "", nc, nil
	}
	tc := tls.Server(nc, m.serverTLS)
	if err := tc.HandshakeContext(m.ctx); err != nil {
		return "", tc, fmt.Errorf("TLS handshake: %w", err)
	}
	id, err := m.peerID(tc.ConnectionState())
	return id, tc, err
}

// serve dispatches one request read from an incoming connection. It must not
// block (the connection is shared by every group) except for InstallSnapshot,
// which arrives on a connection of its own.
func (m *Mux) serve(c *conn, f frame, r *bufio.Reader) error {
	if f.rpc == rpcCustom {
		c.startCall(f)
		return nil
	}
	m.mu.RLock()
	g := m.groups[string(f.group)]
	m.mu.RUnlock()
	switch {
	case f.rpc == rpcInstallSnapshot:
		return serveSnapshot(g, c, f, r)
	case g == nil:
		return c.send(errorFrame(f.id, codeUnknownGroup, fmt.Sprintf("unknown raft group %q", f.group)))
	case f.rpc == rpcHeartbeat:
		c.rd.hb = append(c.rd.hb, inbound{c: c, f: f, g: g})
	default:
		g.enqueue(inbound{c: c, f: f})
	}
	return nil
}

// Close stops the listener, drops every connection, fails pending calls with
// ErrClosed and closes every group transport.
func (m *Mux) Close() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	conns := make([]*conn, 0, len(m.conns))
	for c := range m.conns {
		conns = append(conns, c)
	}
	groups := make([]*GroupTransport, 0, len(m.groups))
	for _, g := range m.groups {
		groups = append(groups, g)
	}
	m.mu.Unlock()
	m.cancel()
	err := m.ln.Close()
	for _, c := range conns {
		c.close(ErrClosed)
	}
	for _, g := range groups {
		g.Close()
	}
	m.wg.Wait()
	return err
}
