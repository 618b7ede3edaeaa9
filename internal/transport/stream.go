package transport

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// snapshotTimeoutScale mirrors raft.DefaultTimeoutScale: every 256 KiB of
// snapshot buys another Timeout.
const snapshotTimeoutScale = 256 << 10

func snapshotTimeout(timeout time.Duration, size int64) time.Duration {
	return max(timeout, timeout*time.Duration(size/snapshotTimeoutScale))
}

// InstallSnapshot implements raft.Transport. The snapshot streams after its
// request frame on a connection of its own, so a large snapshot never holds
// up the heartbeats of other groups on the shared connection.
func (g *GroupTransport) InstallSnapshot(_ raft.ServerID, target raft.ServerAddress, args *raft.InstallSnapshotRequest, resp *raft.InstallSnapshotResponse, data io.Reader) error {
	timeout := snapshotTimeout(g.m.timeout, args.Size)
	ctx, cancel := context.WithTimeout(g.ctx, timeout)
	defer cancel()
	b, err := raftRequestFrame(rpcInstallSnapshot, g.name, args)
	if err != nil {
		return err
	}
	setID(b, 1)
	if err := g.m.linkCut(target); err != nil {
		return err
	}
	nc, err := g.m.dialRaw(ctx, target)
	if err != nil {
		return err
	}
	defer nc.Close()
	stop := context.AfterFunc(ctx, func() { nc.Close() })
	defer stop()
	nc.SetDeadline(time.Now().Add(timeout))
	fail := func(err error) error {
		if g.ctx.Err() != nil {
			return raft.ErrTransportShutdown
		}
		if ctx.Err() != nil { // our AfterFunc closed the conn: say why
			err = fmt.Errorf("%w after %s", ctx.Err(), timeout)
		}
		return fmt.Errorf("transport: snapshot of %d bytes to %s: %w", args.Size, target, err)
	}

	w := bufio.NewWriterSize(nc, 256<<10)
	if _, err := w.Write(b); err != nil {
		return fail(err)
	}
	if _, err := io.CopyN(w, data, args.Size); err != nil {
		return fail(err)
	}
	if err := w.Flush(); err != nil {
		return fail(err)
	}
	f, err := readFrame(bufio.NewReader(nc))
	if err != nil {
		return fail(err)
	}
	return g.decodeResponse(target, f, resp)
}

// serveSnapshot runs on the reader of the snapshot's own connection: raft
// reads the stream straight from it, then whatever raft left unread is skipped.
func serveSnapshot(g *GroupTransport, c *conn, f frame, r *bufio.Reader) error {
	var req raft.InstallSnapshotRequest
	if err := decodePayload(f.payload, &req); err != nil {
		return fmt.Errorf("%w: snapshot request: %v", errBadFrame, err)
	}
	if req.Size < 0 {
		return fmt.Errorf("%w: negative snapshot size", errBadFrame)
	}
	// The stream gets the time its sender allows itself, not the idle deadline.
	c.rd.until = time.Now().Add(snapshotTimeout(c.m.timeout, req.Size))
	c.nc.SetReadDeadline(c.rd.until)
	body := io.LimitReader(r, req.Size)
	if g == nil {
		c.send(errorFrame(f.id, codeUnknownGroup, fmt.Sprintf("unknown raft group %q", f.group)))
	} else {
		g.serve(c, f, body)
	}
	_, err := io.Copy(io.Discard, body)
	return err
}

var (
	errPipelineClosed = errors.New("transport: append pipeline closed")
	errPipelineEnded  = errors.New("transport: append pipeline ended by a failed append")
)

// AppendEntriesPipeline implements raft.Transport: requests go out on the
// shared connection without waiting, and their responses are handed back to
// raft in order.
func (g *GroupTransport) AppendEntriesPipeline(_ raft.ServerID, target raft.ServerAddress) (raft.AppendPipeline, error) {
	if g.m.maxInFlight < 2 {
		return nil, raft.ErrPipelineReplicationNotSupported
	}
	if _, err := g.m.dial(g.ctx, target, dataLane); err != nil {
		return nil, err
	}
	// As in NetworkTransport, the channels hold maxInFlight-2: one request
	// more is in flight while the decoder waits and one while it delivers.
	p := &pipeline{
		g:        g,
		target:   target,
		inflight: make(chan *appendFuture, g.m.maxInFlight-2),
		doneCh:   make(chan raft.AppendFuture, g.m.maxInFlight-2),
		closed:   make(chan struct{}),
		ended:    make(chan struct{}),
	}
	return p, nil
}

type pipeline struct {
	g        *GroupTransport
	target   raft.ServerAddress
	inflight chan *appendFuture
	doneCh   chan raft.AppendFuture
	once     sync.Once
	closed   chan struct{}
	// ended is closed once the decoder met an append that makes raft stop reading
	// Consumer (an error, a refusal, a newer term). raft may still send before it
	// notices, and on a new connection (dial redials a dropped one) that append would
	// wait forever to be handed to a decoder stuck delivering to nobody.
	ended chan struct{}

	// The decoder runs only while appends are in flight: an idle group's pipeline
	// sends an empty append every CommitTimeout, and a decoder per pipeline for its
	// whole life was 4,000 goroutines on a broker with 6,000 replicas, stacks that
	// every garbage collection scans.
	mu       sync.Mutex
	pending  int  // appends handed to the decoder and not yet delivered
	decoding bool // a decoder runs (or ended the pipeline)
}

type appendFuture struct {
	start time.Time
	args  *raft.AppendEntriesRequest
	resp  *raft.AppendEntriesResponse
	err   error // set before the future is delivered on doneCh
	c     *conn
	cl    *call
	id    uint64
}

func (f *appendFuture) Error() error                          { return f.err }
func (f *appendFuture) Start() time.Time                      { return f.start }
func (f *appendFuture) Request() *raft.AppendEntriesRequest   { return f.args }
func (f *appendFuture) Response() *raft.AppendEntriesResponse { return f.resp }

// AppendEntries implements raft.AppendPipeline; it blocks while the pipeline is full.
func (p *pipeline) AppendEntries(args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) (raft.AppendFuture, error) {
	b, err := raftRequestFrame(rpcAppendEntries, p.g.name, args)
	if err != nil {
		return nil, err
	}
	mode := sendNow
	if len(args.Entries) == 0 {
		mode = sendLazy // a CommitTimeout tick: only tells the follower the commit index
	}
	c, cl, id, err := p.g.m.begin(p.g.ctx, p.target, dataLane, b, mode, p.g)
	if err != nil {
		return nil, err
	}
	fut := &appendFuture{start: cl.started, args: args, resp: resp, c: c, cl: cl, id: id}
	p.handOver(1) // before the send, which blocks on a full pipeline
	err = errPipelineClosed
	select {
	case p.inflight <- fut:
		return fut, nil
	case <-p.ended:
		err = errPipelineEnded
	case <-p.closed:
	case <-p.g.ctx.Done():
	}
	p.handOver(-1)
	c.forget(id)
	return nil, err
}

// handOver counts appends given to (by 1) or delivered by (by -1) the decoder, and
// starts a decoder for the first one when none runs.
func (p *pipeline) handOver(by int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.pending += by
	if p.pending > 0 && !p.decoding {
		p.decoding = true
		go p.decodeLoop()
	}
}

// more reports whether the decoder has appends left to deliver, and marks it ended
// when not.
func (p *pipeline) more() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.decoding = p.pending > 0
	return p.decoding
}

// Consumer implements raft.AppendPipeline.
func (p *pipeline) Consumer() <-chan raft.AppendFuture { return p.doneCh }

// Close implements raft.AppendPipeline.
func (p *pipeline) Close() error {
	p.once.Do(func() { close(p.closed) })
	return nil
}

func (p *pipeline) decodeLoop() {
	for p.more() {
		var fut *appendFuture
		select {
		case fut = <-p.inflight:
		case <-p.closed:
			return
		case <-p.g.ctx.Done():
			return
		}
		if !p.wait(fut) {
			return
		}
		// raft's pipelineDecode returns after such an answer.
		if fut.err != nil || !fut.resp.Success || fut.resp.Term > fut.args.Term {
			close(p.ended)
			select {
			case p.doneCh <- fut:
			case <-p.closed:
			case <-p.g.ctx.Done():
			}
			return
		}
		select {
		case p.doneCh <- fut:
			p.handOver(-1)
		case <-p.closed:
			return
		case <-p.g.ctx.Done():
			return
		}
	}
}

// wait fills in fut's outcome; false means the pipeline was closed meanwhile.
func (p *pipeline) wait(fut *appendFuture) bool {
	select {
	case <-fut.cl.done: // or failed by the reaper after the Mux timeout
		if fut.cl.err != nil {
			fut.err = fmt.Errorf("transport: append to %s: %w", p.target, fut.cl.err)
		} else {
			fut.err = p.g.decodeResponse(p.target, fut.cl.f, fut.resp)
		}
		return true
	case <-p.closed:
	case <-p.g.ctx.Done():
	}
	fut.c.forget(fut.id)
	return false
}
