package transport

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// redialBackoff is how long a failed dial's error is handed to callers
// without dialing again: a peer that is down costs one dial per period, not
// one per group and heartbeat, and a blackholed one does not make every
// group wait out its own connect timeout in turn.
const redialBackoff = 250 * time.Millisecond

// lane picks one of the two connections to a peer process. AppendEntries
// (the bulk data, which must stay in order) travel on their own, so that a
// big batch never holds up the heartbeats, votes and calls of every group
// behind it: a 40 MiB append on the one shared connection used to cost other
// partitions their leaders (their heartbeats waited while it was written and
// read).
type lane uint8

const (
	controlLane lane = iota
	dataLane
)

type laneKey struct {
	addr raft.ServerAddress
	lane lane
}

// peer holds the outgoing connection of one lane to a peer process.
type peer struct {
	mu      sync.Mutex
	c       *conn
	dialing chan struct{} // closed when the dial in progress ends
	err     error         // the last dial's failure
	errAt   time.Time
}

// dial returns the shared connection of a lane to addr, dialing it if needed.
// Callers arriving during a dial wait for that dial (or their ctx).
func (m *Mux) dial(ctx context.Context, addr raft.ServerAddress, ln lane) (*conn, error) {
	key := laneKey{addr, ln}
	m.mu.RLock() // every RPC passes here: share the lock in the common case
	p, closed := m.peers[key], m.closed
	m.mu.RUnlock()
	if closed {
		return nil, ErrClosed
	}
	if p == nil {
		m.mu.Lock()
		if p = m.peers[key]; p == nil {
			p = &peer{}
			m.peers[key] = p
		}
		m.mu.Unlock()
	}

	for {
		p.mu.Lock()
		if p.c != nil && !p.c.isClosed() {
			c := p.c
			p.mu.Unlock()
			return c, nil
		}
		if p.dialing == nil {
			if p.err != nil && time.Since(p.errAt) < redialBackoff {
				err := p.err
				p.mu.Unlock()
				return nil, err
			}
			p.dialing = make(chan struct{})
			go m.connect(p, addr)
		}
		dialing := p.dialing
		p.mu.Unlock()
		select {
		case <-dialing:
		case <-ctx.Done():
			return nil, fmt.Errorf("transport: dial %s: %w", addr, ctx.Err())
		}
	}
}

// connect dials addr for p; it runs on its own so that no caller's context
// decides a dial that every caller shares.
func (m *Mux) connect(p *peer, addr raft.ServerAddress) {
	var c *conn
	nc, err := m.dialRaw(m.ctx, addr)
	if err == nil {
		c = newConn(m, nc, true)
		c.peer = addr
		if m.track(c) {
			go c.readLoop(bufio.NewReaderSize(nc, readBufSize), nil)
		} else {
			nc.Close()
			c, err = nil, ErrClosed
		}
	}
	p.mu.Lock()
	p.c, p.err, p.errAt = c, err, time.Now()
	close(p.dialing)
	p.dialing = nil
	p.mu.Unlock()
}

// dialRaw opens a TCP connection (a TLS one when configured) and sends the preamble.
func (m *Mux) dialRaw(ctx context.Context, addr raft.ServerAddress) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, m.timeout)
	defer cancel()
	stop := context.AfterFunc(m.ctx, cancel)
	defer stop()
	d := net.Dialer{KeepAlive: 15 * time.Second}
	nc, err := d.DialContext(ctx, "tcp", string(addr))
	if err != nil {
		if m.isClosed() {
			return nil, ErrClosed
		}
		return nil, fmt.Errorf("transport: dial %s: %w", addr, err)
	}
	if m.clientTLS != nil {
		tc := tls.Client(nc, m.clientTLS)
		if err := tc.HandshakeContext(ctx); err != nil {
			nc.Close()
			return nil, fmt.Errorf("transport: dial %s: TLS handshake: %w", addr, err)
		}
		nc = tc
	}
	nc.SetWriteDeadline(time.Now().Add(m.timeout))
	if _, err := io.WriteString(nc, preamble); err != nil {
		nc.Close()
		return nil, fmt.Errorf("transport: dial %s: %w", addr, err)
	}
	nc.SetWriteDeadline(time.Time{})
	return nc, nil
}
