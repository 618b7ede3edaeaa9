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
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
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

// RemoteError is a Handler's error as seen by the caller on the other process.
type RemoteError struct{ Msg string }

func (e *RemoteError) Error() string { return e.Msg }

// Handler serves one custom method of one group. ctx ends when the caller's
// deadline passes, the connection drops or the Mux closes.
type Handler func(ctx context.Context, req []byte) ([]byte, error)

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
}

// Mux is the process's single Raft listener and its connections to peers.
type Mux struct {
	log         *slog.Logger
	ln          net.Listener
	addr        raft.ServerAddress
	timeout     time.Duration
	maxInFlight int
	coalesce    time.Duration

	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup // accept loop and connection goroutines

	mu       sync.RWMutex
	groups   map[string]*GroupTransport
	handlers map[string]map[string]Handler // group -> method -> handler
	peers    map[raft.ServerAddress]*peer
	conns    map[*conn]struct{}
	closed   bool
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
		ctx:         ctx,
		cancel:      cancel,
		groups:      make(map[string]*GroupTransport),
		handlers:    make(map[string]map[string]Handler),
		peers:       make(map[raft.ServerAddress]*peer),
		conns:       make(map[*conn]struct{}),
	}
	m.wg.Add(2)
	go m.acceptLoop()
	go m.reapLoop()
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

// Handle serves method of group for Call from other processes; a nil h removes it.
func (m *Mux) Handle(group, method string, h Handler) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if h == nil {
		delete(m.handlers[group], method)
		if len(m.handlers[group]) == 0 {
			delete(m.handlers, group)
		}
		return
	}
	if m.handlers[group] == nil {
		m.handlers[group] = make(map[string]Handler)
	}
	m.handlers[group][method] = h
}

// Call invokes method of group on the process at addr. A handler's error comes
// back as *RemoteError; an unreachable peer fails at once (connection refused)
// or when ctx ends.
func (m *Mux) Call(ctx context.Context, addr raft.ServerAddress, group, method string, req []byte) ([]byte, error) {
	if len(group) > maxName || len(method) > maxName {
		return nil, fmt.Errorf("transport: group or method name longer than %d bytes", maxName)
	}
	var timeoutMs uint64
	if d, ok := ctx.Deadline(); ok {
		left := time.Until(d)
		if left <= 0 {
			return nil, context.DeadlineExceeded
		}
		timeoutMs = uint64(left.Milliseconds()) + 1
	}
	b, err := requestFrame(rpcCustom, group, method, timeoutMs, req)
	if err != nil {
		return nil, err
	}
	f, err := m.roundTrip(ctx, addr, b, sendNow, nil)
	if err != nil {
		return nil, err
	}
	if f.kind == kindError {
		err := remoteErr(addr, group, method, f)
		if cerr := ctxErr(ctx); cerr != nil {
			// The handler's context ended with ours: report it as ours too.
			err = fmt.Errorf("%w: %w", cerr, err)
		}
		return nil, err
	}
	return f.payload, nil
}

// ctxErr is ctx.Err(), counting a deadline as passed even before ctx's own
// timer has fired (it may run late on a loaded machine).
func ctxErr(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if d, ok := ctx.Deadline(); ok && !time.Now().Before(d) {
		return context.DeadlineExceeded
	}
	return nil
}

// roundTrip sends one request to addr and waits for its response or error frame.
// from names the sending group of lazy frames.
func (m *Mux) roundTrip(ctx context.Context, addr raft.ServerAddress, req []byte, mode sendMode, from *GroupTransport) (frame, error) {
	c, err := m.dial(ctx, addr)
	if err != nil {
		return frame{}, err
	}
	cl, id, err := c.start(req, mode, from)
	if err != nil {
		return frame{}, fmt.Errorf("transport: send to %s: %w", addr, err)
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
		if m.isClosed() {
			return frame{}, ErrClosed
		}
		return frame{}, fmt.Errorf("transport: call to %s: %w", addr, ctx.Err())
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
			}
		}
	}
}

// serveConn checks the preamble of an incoming connection and then serves it.
func (m *Mux) serveConn(nc net.Conn) {
	defer m.wg.Done()
	r := bufio.NewReaderSize(nc, 64<<10)
	nc.SetReadDeadline(time.Now().Add(m.timeout))
	var got [len(preamble)]byte
	if _, err := io.ReadFull(r, got[:]); err != nil || string(got[:]) != preamble {
		m.log.Warn("raft transport: rejecting connection without a valid preamble", "peer", nc.RemoteAddr().String(), "error", err)
		nc.Close()
		return
	}
	nc.SetReadDeadline(time.Time{})
	c := newConn(m, nc, false)
	if !m.track(c) {
		nc.Close()
		return
	}
	c.readLoop(r, m.serve)
}

// serve dispatches one request read from an incoming connection. It must not
// block (the connection is shared by every group) except for InstallSnapshot,
// which arrives on a connection of its own.
func (m *Mux) serve(c *conn, f frame, r *bufio.Reader) error {
	if f.rpc == rpcCustom {
		go m.serveCall(c, f)
		return nil
	}
	m.mu.RLock()
	g := m.groups[f.group]
	m.mu.RUnlock()
	switch {
	case f.rpc == rpcInstallSnapshot:
		return serveSnapshot(g, c, f, r)
	case g == nil:
		return c.send(errorFrame(f.id, codeUnknownGroup, fmt.Sprintf("unknown raft group %q", f.group)))
	case f.rpc == rpcHeartbeat:
		c.hb = append(c.hb, inbound{c: c, f: f, g: g})
	default:
		g.enqueue(inbound{c: c, f: f})
	}
	return nil
}

func (m *Mux) serveCall(c *conn, f frame) {
	m.mu.RLock()
	methods, known := m.handlers[f.group]
	h := methods[f.method]
	_, open := m.groups[f.group]
	m.mu.RUnlock()
	if h == nil {
		code := codeUnknownGroup
		if known || open {
			code = codeUnknownMethod
		}
		c.send(errorFrame(f.id, code, fmt.Sprintf("no handler for %q of group %q", f.method, f.group)))
		return
	}
	ctx := c.ctx
	if f.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Duration(f.timeout)*time.Millisecond)
		defer cancel()
	}
	resp, err := runHandler(ctx, h, f.payload)
	var b []byte
	if err == nil {
		b, err = responseFrame(f.id, resp)
	}
	if err != nil {
		b = errorFrame(f.id, codeRemote, err.Error())
	}
	c.send(b)
}

// runHandler turns a handler's panic into an error so one bad request cannot
// take down every group of the process.
func runHandler(ctx context.Context, h Handler, req []byte) (resp []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("handler panicked: %v", r)
		}
	}()
	return h(ctx, req)
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
