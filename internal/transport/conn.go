package transport

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// conn is one TCP connection shared by every group of the process. Outgoing
// conns carry requests out and responses back; incoming conns the reverse.
//
// There is no writer goroutine: the first sender to find the conn idle
// writes, and frames queued meanwhile go out in the same flush, so an idle
// cluster pays no goroutine hand-off per frame. Syscalls dominate the cost of
// an idle group (a heartbeat round trip is four of them), so when many groups
// keep the conn busy, frames that need no haste (heartbeats, empty appends)
// wait up to the Mux's coalescing delay to share one write, as long as
// several groups have been sending such frames lately (a single group's
// back-to-back heartbeats, as raft's VerifyLeader sends, are never delayed).
type conn struct {
	// Set by newConn and never changed: read by anyone without a lock.
	m        *Mux
	nc       net.Conn
	outgoing bool
	peerID   string          // incoming over TLS: the raft server ID the peer's certificate names
	closed   chan struct{}   // closed once, when the conn dies
	ctx      context.Context // handlers of incoming calls stop when the conn dies
	cancel   context.CancelFunc

	// lastRead (unix nanos of the last frame received) is written by the
	// reader and read by callers and the reaper deciding whether the peer is alive.
	lastRead atomic.Int64

	mu     sync.Mutex
	shared connShared // guarded by mu

	wr writerState // owned by the sender that set shared.writing
	rd readerState // owned by readLoop's goroutine (and the serve functions it calls)

	faultState // tests' link faults (faults.go): atomics and a sync.Once of its own
}

// connShared is what senders, the reader, callers and the reaper all touch:
// only under conn.mu.
type connShared struct {
	queue   [][]byte
	spare   [][]byte
	writing bool        // a sender owns the conn's writerState and drains queue
	timer   *time.Timer // flushes lazy frames after the coalescing delay
	armed   bool        // timer is set
	company company     // which groups sent lazy frames lately

	pending   map[uint64]*call // outgoing only: our calls awaiting their answer
	nextID    uint64           // outgoing only
	lastStart time.Time        // outgoing only: when the last call started

	calls map[uint64]context.CancelFunc // incoming only: calls being served, by id

	err error // set once, when the conn dies
}

// writerState belongs to whichever sender holds connShared.writing; no lock.
type writerState struct {
	deadlineUntil time.Time // current write deadline, refreshed lazily
}

// readerState belongs to the conn's reader goroutine; no lock.
type readerState struct {
	until time.Time // current read deadline
	hb    []inbound // heartbeats read but not yet dispatched
}

type sendMode uint8

const (
	sendNow  sendMode = iota // someone waits on this frame
	sendLazy                 // may wait for company up to the coalescing delay
	sendHold                 // queued only; the caller calls kick after its batch
)

// call is one outstanding request on an outgoing conn.
type call struct {
	done    chan struct{}
	started time.Time
	expires bool  // a raft RPC: the reaper fails it after the Mux timeout
	f       frame // the response or error frame
	err     error // transport failure
}

var (
	// errIdle closes an outgoing conn that carried no call for a while; it
	// never reaches a caller (see Mux.begin).
	errIdle = errors.New("idle connection closed")
	// errNoAnswer fails raft RPCs the peer did not answer within the Mux timeout.
	errNoAnswer = fmt.Errorf("no answer within the transport timeout: %w", os.ErrDeadlineExceeded)
	// errUnresponsive closes a conn on which nothing arrived for a whole timeout.
	errUnresponsive = fmt.Errorf("peer unresponsive: %w", os.ErrDeadlineExceeded)
)

func newConn(m *Mux, nc net.Conn, outgoing bool) *conn {
	ctx, cancel := context.WithCancel(m.ctx)
	c := &conn{
		m:        m,
		nc:       nc,
		outgoing: outgoing,
		closed:   make(chan struct{}),
		ctx:      ctx,
		cancel:   cancel,
	}
	if outgoing {
		c.shared.pending = make(map[uint64]*call)
	}
	c.shared.lastStart = time.Now()
	c.lastRead.Store(c.shared.lastStart.UnixNano())
	return c
}

// send queues a complete frame and writes it out now.
func (c *conn) send(b []byte) error { return c.push(b, sendNow, nil) }

// push queues a frame and, per mode and unless another sender is already
// writing, writes the queue out itself. from names the sender of lazy frames.
func (c *conn) push(b []byte, mode sendMode, from *GroupTransport) error {
	if c.faultOut(b) {
		return nil
	}
	return c.enqueue(b, mode, from)
}

func (c *conn) enqueue(b []byte, mode sendMode, from *GroupTransport) error {
	c.mu.Lock()
	if c.shared.err != nil {
		err := c.shared.err
		c.mu.Unlock()
		return err
	}
	c.shared.queue = append(c.shared.queue, b)
	delay := false
	if mode == sendLazy && c.m.coalesce > 0 {
		delay = c.shared.company.note(from, time.Now(), 2*c.m.coalesce)
	}
	switch {
	case c.shared.writing, mode == sendHold, mode == sendLazy && c.shared.armed:
		c.mu.Unlock()
		return nil
	case delay:
		c.shared.armed = true
		if c.shared.timer == nil {
			c.shared.timer = time.AfterFunc(c.m.coalesce, c.onTimer)
		} else {
			c.shared.timer.Reset(c.m.coalesce)
		}
		c.mu.Unlock()
		return nil
	}
	c.shared.writing = true
	c.mu.Unlock()
	c.flush(true)
	return nil
}

// company counts the distinct groups that sent lazy frames in the current
// and the previous window: waiting pays only when others are likely to send
// within the delay.
type company struct {
	start    time.Time
	seen     [minCompany]*GroupTransport
	n, prevN int
}

// minCompany distinct groups per window make delaying worthwhile.
const minCompany = 4

// note records a lazy frame of g and reports whether it should wait.
func (k *company) note(g *GroupTransport, now time.Time, window time.Duration) bool {
	if age := now.Sub(k.start); age >= window {
		k.prevN = 0
		if age < 2*window {
			k.prevN = k.n
		}
		k.n, k.start = 0, now
		clear(k.seen[:])
	}
	if k.n < minCompany && !slices.Contains(k.seen[:k.n], g) {
		k.seen[k.n] = g
		k.n++
	}
	return max(k.n, k.prevN) >= minCompany
}

// kick writes what push(sendHold) queued.
func (c *conn) kick() {
	c.mu.Lock()
	if c.shared.writing || len(c.shared.queue) == 0 || c.shared.err != nil {
		c.mu.Unlock()
		return
	}
	c.shared.writing = true
	c.mu.Unlock()
	c.flush(true)
}

func (c *conn) onTimer() {
	c.mu.Lock()
	c.shared.armed = false
	c.mu.Unlock()
	c.kick()
}

// flush writes queued frames. A sender writes one batch; whatever queued up
// meanwhile is left to a goroutine, so no raft goroutine is held writing
// other groups' traffic for long.
func (c *conn) flush(once bool) {
	for {
		c.mu.Lock()
		batch := c.shared.queue
		if len(batch) == 0 || c.shared.err != nil {
			c.shared.writing = false
			c.mu.Unlock()
			return
		}
		c.shared.queue, c.shared.spare = c.shared.spare, nil
		c.mu.Unlock()

		err := c.writeBatch(batch)
		for _, b := range batch {
			recycleFrame(b)
		}
		clear(batch)
		c.mu.Lock()
		c.shared.spare = batch[:0]
		more := len(c.shared.queue) > 0
		c.mu.Unlock()
		if err != nil {
			if !c.isClosed() {
				c.m.log.Warn("raft transport: write failed, closing connection", "peer", c.nc.RemoteAddr().String(), "error", err)
			}
			c.close(err)
			return
		}
		if once && more {
			go c.flush(false)
			return
		}
	}
}

// Write buffers are pooled rather than owned by a conn: an idle conn (and a
// hostile one that never gets an answer) holds none.
const writeBufSize = 64 << 10

var writers = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, writeBufSize) }}

func (c *conn) writeBatch(batch [][]byte) error {
	// Moving the deadline on every flush costs a timer update each time;
	// keeping it at least half a timeout ahead bounds a stuck write just as well.
	if now := time.Now(); c.wr.deadlineUntil.Sub(now) < c.m.timeout/2 {
		c.wr.deadlineUntil = now.Add(c.m.timeout)
		c.nc.SetWriteDeadline(c.wr.deadlineUntil)
	}
	w := writers.Get().(*bufio.Writer)
	w.Reset(c.nc)
	defer func() {
		w.Reset(nil) // drops what a failed write left, and the conn
		writers.Put(w)
	}()
	for _, b := range batch {
		if _, err := w.Write(b); err != nil {
			return err
		}
	}
	return w.Flush()
}

// start registers a call and sends its request frame, stamped with the
// call's id. from is the raft group making the call, if any: its calls expire
// after the Mux timeout (Call relies on its ctx instead).
func (c *conn) start(b []byte, mode sendMode, from *GroupTransport) (*call, uint64, error) {
	cl := &call{done: make(chan struct{}), started: time.Now(), expires: from != nil}
	c.mu.Lock()
	if c.shared.err != nil {
		err := c.shared.err
		c.mu.Unlock()
		return nil, 0, err
	}
	c.shared.nextID++
	id := c.shared.nextID
	c.shared.pending[id] = cl
	c.shared.lastStart = cl.started
	c.mu.Unlock()
	setID(b, id)
	if err := c.push(b, mode, from); err != nil {
		c.forget(id)
		return nil, 0, err
	}
	return cl, id, nil
}

func (c *conn) forget(id uint64) {
	c.mu.Lock()
	delete(c.shared.pending, id)
	c.mu.Unlock()
}

// abandon gives up on a call whose caller stopped waiting.
func (c *conn) abandon(id uint64, cl *call) {
	c.forget(id)
	c.checkAlive(cl.started)
}

// checkAlive closes the conn if a call sent at started waited a full timeout
// while nothing at all arrived on the conn: the peer is treated as gone so
// later calls redial instead of queueing behind a dead socket.
func (c *conn) checkAlive(started time.Time) {
	if time.Since(started) >= c.m.timeout && c.lastRead.Load() < started.UnixNano() {
		c.close(errUnresponsive)
	}
}

// closeIfIdle closes an outgoing conn that has no call pending and started
// none for idle, well before the peer's own idle deadline could cut it under
// a request in flight.
func (c *conn) closeIfIdle(now time.Time, idle time.Duration) {
	c.mu.Lock()
	if c.shared.err != nil || len(c.shared.pending) > 0 || now.Sub(c.shared.lastStart) < idle {
		c.mu.Unlock()
		return
	}
	c.shut(errIdle)
}

// reap fails the raft RPCs that have waited longer than the Mux timeout. One
// sweep per conn replaces a timer per RPC, which idle heartbeats paid for.
func (c *conn) reap(now time.Time) {
	var expired []*call
	c.mu.Lock()
	for id, cl := range c.shared.pending {
		if cl.expires && now.Sub(cl.started) >= c.m.timeout {
			delete(c.shared.pending, id)
			expired = append(expired, cl)
		}
	}
	c.mu.Unlock()
	if len(expired) == 0 {
		return
	}
	oldest := now
	for _, cl := range expired {
		if cl.started.Before(oldest) {
			oldest = cl.started
		}
	}
	c.checkAlive(oldest) // first, so the callers told to retry get a new conn
	for _, cl := range expired {
		cl.err = errNoAnswer
		close(cl.done)
	}
}

func (c *conn) complete(f frame) {
	c.mu.Lock()
	cl := c.shared.pending[f.id]
	delete(c.shared.pending, f.id)
	c.mu.Unlock()
	if cl != nil {
		cl.f = f
		close(cl.done)
	}
}

// close tears the conn down once; pending calls fail with err.
func (c *conn) close(err error) {
	c.mu.Lock()
	c.shut(err)
}

// shut is close with c.mu held; it unlocks.
func (c *conn) shut(err error) {
	if c.shared.err != nil {
		c.mu.Unlock()
		return
	}
	c.shared.err = err
	pending := c.shared.pending
	c.shared.pending = nil
	c.shared.queue = nil
	if c.shared.timer != nil {
		c.shared.timer.Stop()
	}
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

// readLoop reads frames until the conn dies; serve handles each request
// (incoming conns) and may read more from r (snapshots stream after their frame).
func (c *conn) readLoop(r *bufio.Reader, serve func(*conn, frame, *bufio.Reader) error) {
	defer c.m.wg.Done()
	for {
		f, err := c.readFrame(r)
		if err == nil && c.outgoing && c.faultIn(f, c.received) {
			continue
		}
		if err == nil {
			c.lastRead.Store(time.Now().UnixNano())
			switch {
			case c.outgoing && (f.kind == kindResponse || f.kind == kindError):
				c.complete(f)
			case !c.outgoing && f.kind == kindCancel:
				c.cancelCall(f.id)
			case !c.outgoing && f.kind == kindRequest:
				err = serve(c, f, r)
				if len(c.rd.hb) > 0 && !frameBuffered(r) {
					go serveHeartbeats(c, c.rd.hb)
					c.rd.hb = nil
				}
			default:
				err = errors.Join(errBadFrame, errors.New("unexpected frame kind for this connection direction"))
			}
			if err == nil && r.Size() < readBufSize && r.Buffered() == 0 {
				// The peer speaks the protocol: give it the read buffer of an
				// established conn (it starts small, see Mux.serveConn).
				r = bufio.NewReaderSize(c.nc, readBufSize)
			}
		}
		if err != nil {
			switch {
			case c.isClosed() || c.m.isClosed() || isEOF(err):
			case errors.Is(err, os.ErrDeadlineExceeded):
				c.m.log.Info("raft transport: closing a connection that went quiet", "peer", c.nc.RemoteAddr().String(), "error", err)
			default:
				c.m.log.Warn("raft transport: dropping connection", "peer", c.nc.RemoteAddr().String(), "error", err)
			}
			c.close(err)
			return
		}
	}
}

// readBufSize is the read buffer of an established conn: a burst of many
// groups' heartbeats arrives in one read.
const readBufSize = 64 << 10

// minFrameRate (bytes/s) bounds how long the rest of a frame may take to
// arrive, beyond the Mux timeout: a peer cannot hold a frame open by trickling it.
const minFrameRate = 256 << 10

// readFrame reads the next frame under read deadlines: an incoming conn on
// which no frame starts within the idle timeout is closed, and a frame that
// is not buffered yet must arrive at minFrameRate. The idle deadline moves
// only once half of it has passed, which spares a timer update per frame.
func (c *conn) readFrame(r *bufio.Reader) (frame, error) {
	now := time.Now()
	switch {
	case c.outgoing && !c.rd.until.IsZero():
		c.rd.until = time.Time{} // our own calls: checkAlive watches the peer
		c.nc.SetReadDeadline(c.rd.until)
	case !c.outgoing && c.rd.until.Sub(now) < c.m.idle/2:
		c.rd.until = now.Add(c.m.idle)
		c.nc.SetReadDeadline(c.rd.until)
	}
	n, err := readLength(r)
	if err != nil {
		return frame{}, err
	}
	if r.Buffered() < n {
		c.rd.until = time.Now().Add(c.m.timeout + time.Duration(n/minFrameRate)*time.Second)
		c.nc.SetReadDeadline(c.rd.until)
	}
	body, err := readBody(r, n)
	if err != nil {
		return frame{}, err
	}
	return parseFrame(body)
}

// received is a frame read on an outgoing conn, delivered late by a delay fault.
func (c *conn) received(f frame) {
	c.lastRead.Store(time.Now().UnixNano())
	if f.kind == kindResponse || f.kind == kindError {
		c.complete(f)
	}
}

func isEOF(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed)
}

// frameBuffered reports whether r holds a whole frame, so reading it will not block.
func frameBuffered(r *bufio.Reader) bool {
	if r.Buffered() < 4 {
		return false // Peek would block reading more
	}
	hdr, _ := r.Peek(4)
	return uint64(r.Buffered()) >= 4+uint64(binary.BigEndian.Uint32(hdr))
}
