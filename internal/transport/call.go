package transport

import (
	"context"
	"fmt"
	"time"

	"github.com/hashicorp/raft"
)

// RemoteError is a Handler's error as seen by the caller on the other process.
type RemoteError struct{ Msg string }

func (e *RemoteError) Error() string { return e.Msg }

// Handler serves one custom method of one group. ctx ends when the caller's
// deadline passes, the connection drops or the Mux closes.
type Handler func(ctx context.Context, req []byte) ([]byte, error)

type peerKey struct{}

// PeerID is, inside a Handler over TLS, the raft server ID the caller's certificate
// names; "" without TLS.
func PeerID(ctx context.Context) string {
	id, _ := ctx.Value(peerKey{}).(string)
	return id
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
// or when ctx ends. The handler's context carries ctx's deadline and is
// cancelled when the caller gives up.
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
	f, err := m.roundTrip(ctx, addr, controlLane, b, sendNow, nil)
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

// startCall runs on the reader, so a cancel frame that follows the request
// always finds the call registered.
func (c *conn) startCall(f frame) {
	var ctx context.Context
	var cancel context.CancelFunc
	base := c.ctx
	if c.peerID != "" {
		base = context.WithValue(base, peerKey{}, c.peerID)
	}
	if f.timeout > 0 {
		ctx, cancel = context.WithTimeout(base, time.Duration(f.timeout)*time.Millisecond)
	} else {
		ctx, cancel = context.WithCancel(base)
	}
	c.mu.Lock()
	if c.shared.calls == nil {
		c.shared.calls = make(map[uint64]context.CancelFunc)
	}
	c.shared.calls[f.id] = cancel
	c.mu.Unlock()
	go func() {
		c.m.serveCall(ctx, c, f)
		c.mu.Lock()
		delete(c.shared.calls, f.id)
		c.mu.Unlock()
		cancel()
	}()
}

// cancelCall stops the handler of a call its caller gave up on.
func (c *conn) cancelCall(id uint64) {
	c.mu.Lock()
	cancel := c.shared.calls[id]
	c.mu.Unlock()
	if cancel != nil {
		cancel()
	}
}

func (m *Mux) serveCall(ctx context.Context, c *conn, f frame) {
	m.mu.RLock()
	methods, known := m.handlers[string(f.group)]
	h := methods[string(f.method)]
	_, open := m.groups[string(f.group)]
	m.mu.RUnlock()
	if h == nil {
		code := codeUnknownGroup
		if known || open {
			code = codeUnknownMethod
		}
		c.send(errorFrame(f.id, code, fmt.Sprintf("no handler for %q of group %q", f.method, f.group)))
		return
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
