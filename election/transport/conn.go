package transport

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// conn is one TCP connection shared by every group of the process. Outgoing
// conns carry requests out and responses back; incoming conns the reverse.
// A single writer goroutine drains the send queue and flushes once per batch,
// so many groups' heartbeats to one peer share a syscall.
type conn struct {
	m        *Mux
	nc       net.Conn
	outgoing bool

	mu      sync.Mutex
	queue   [][]byte
	pending map[uint64]*call // outgoing only
	nextID  uint64
	err     error // set once, when the conn dies

	wake     chan struct{}
	closed   chan struct{}
	ctx      context.Context // handlers of incoming calls stop when the conn dies
	cancel   context.CancelFunc
	lastRead atomic.Int64 // unix nanos of the last frame received
}

// call is one outstanding request on an outgoing conn.
type call struct {
	done    chan struct{}
	started time.Time
	f       frame // the response or error frame
	err     error // transport failure
}

func newConn(m *Mux, nc net.Conn, outgoing bool) *conn {
	ctx, cancel := context.WithCancel(m.ctx)
	c := &conn{
		m:        m,
		nc:       nc,
		outgoing: outgoing,
		wake:     make(chan struct{}, 1),
		closed:   make(chan struct{}),
		ctx:      ctx,
		cancel:   cancel,
	}
	if outgoing {
		c.pending = make(map[uint64]*call)
	}
	c.lastRead.Store(time.Now().UnixNano())
	return c
}

// send queues a complete frame for the writer.
func (c *conn) send(b []byte) error {
	c.mu.Lock()
	if c.err != nil {
		err := c.err
		c.mu.Unlock()
		return err
	}
	c.queue = append(c.queue, b)
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
	return nil
}

// start registers a call and sends its request frame, built once the id is known.
func (c *conn) start(build func(id uint64) ([]byte, error)) (*call, uint64, error) {
	cl := &call{done: make(chan struct{}), started: time.Now()}
	c.mu.Lock()
	if c.err != nil {
		err := c.err
		c.mu.Unlock()
		return nil, 0, err
	}
	c.nextID++
	id := c.nextID
	c.pending[id] = cl
	c.mu.Unlock()
	b, err := build(id)
	if err == nil {
		err = c.send(b)
	}
	if err != nil {
		c.forget(id)
		return nil, 0, err
	}
	return cl, id, nil
}

func (c *conn) forget(id uint64) {
	c.mu.Lock()
	delete(c.pending, id)
	c.mu.Unlock()
}

// abandon gives up on a call whose caller stopped waiting. If nothing at all
// arrived on the conn since the call went out and it has waited a full
// timeout, the peer is treated as gone so later calls redial instead of
// queueing behind a dead socket.
func (c *conn) abandon(id uint64, cl *call) {
	c.forget(id)
	if time.Since(cl.started) >= c.m.timeout && c.lastRead.Load() < cl.started.UnixNano() {
		c.close(errors.New("peer unresponsive"))
	}
}

func (c *conn) complete(f frame) {
	c.mu.Lock()
	cl := c.pending[f.id]
	delete(c.pending, f.id)
	c.mu.Unlock()
	if cl != nil {
		cl.f = f
		close(cl.done)
	}
}

// close tears the conn down once; pending calls fail with err.
func (c *conn) close(err error) {
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return
	}
	c.err = err
	pending := c.pending
	c.pending = nil
	c.queue = nil
	c.mu.Unlock()
	close(c.closed)
	c.cancel()
	c.nc.Close()
	for _, cl := range pending {
		cl.err = err
		close(cl.done)
	}
	c.m.dropConn(c)
}

func (c *conn) isClosed() bool {
	select {
	case <-c.closed:
		return true
	default:
		return false
	}
}

func (c *conn) writeLoop() {
	defer c.m.wg.Done()
	w := bufio.NewWriterSize(c.nc, 64<<10)
	var batch [][]byte
	for {
		select {
		case <-c.closed:
			return
		case <-c.wake:
		}
		c.mu.Lock()
		batch, c.queue = c.queue, batch[:0]
		c.mu.Unlock()
		if len(batch) == 0 {
			continue
		}
		if c.m.timeout > 0 {
			c.nc.SetWriteDeadline(time.Now().Add(c.m.timeout))
		}
		var err error
		for i, b := range batch {
			if err == nil {
				_, err = w.Write(b)
			}
			batch[i] = nil
		}
		if err == nil {
			err = w.Flush()
		}
		if err != nil {
			c.m.log.Warn("raft transport: write failed, closing connection", "peer", c.nc.RemoteAddr().String(), "error", err)
			c.close(err)
			return
		}
	}
}

// readLoop reads frames until the conn dies; serve handles each request
// (incoming conns) and may read more from r (snapshots stream after their frame).
func (c *conn) readLoop(r *bufio.Reader, serve func(*conn, frame, *bufio.Reader) error) {
	defer c.m.wg.Done()
	for {
		f, err := readFrame(r)
		if err == nil {
			c.lastRead.Store(time.Now().UnixNano())
			switch {
			case c.outgoing && (f.kind == kindResponse || f.kind == kindError):
				c.complete(f)
			case !c.outgoing && f.kind == kindRequest:
				err = serve(c, f, r)
			default:
				err = errors.Join(errBadFrame, errors.New("unexpected frame kind for this connection direction"))
			}
		}
		if err != nil {
			if !c.isClosed() && !c.m.isClosed() && !isEOF(err) {
				c.m.log.Warn("raft transport: dropping connection", "peer", c.nc.RemoteAddr().String(), "error", err)
			}
			c.close(err)
			return
		}
	}
}

func isEOF(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed)
}
