package transport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
)

// GroupTransport is one Raft group's view of the Mux. It implements
// raft.Transport, raft.WithClose and raft.WithPreVote.
type GroupTransport struct {
	m         *Mux
	name      string
	consumeCh chan raft.RPC
	ctx       context.Context // cancelled by Close
	cancel    context.CancelFunc

	hbMu sync.Mutex
	hbFn func(raft.RPC)

	gate electionGate // see SetElectionGate

	probe atomic.Pointer[func(term uint64) bool] // see SetHeartbeatProbe

	// Requests other than heartbeats are handed to raft one at a time, in
	// arrival order (pipelined appends must not overtake each other), by a
	// goroutine that exists only while the queue is non-empty.
	qMu      sync.Mutex
	queue    []inbound
	draining bool
}

type inbound struct {
	c *conn
	f frame
	g *GroupTransport // heartbeats only
}

var (
	_ raft.Transport   = (*GroupTransport)(nil)
	_ raft.WithClose   = (*GroupTransport)(nil)
	_ raft.WithPreVote = (*GroupTransport)(nil)
)

func newGroupTransport(m *Mux, name string) *GroupTransport {
	ctx, cancel := context.WithCancel(m.ctx)
	return &GroupTransport{m: m, name: name, consumeCh: make(chan raft.RPC), ctx: ctx, cancel: cancel}
}

// Consumer implements raft.Transport.
func (g *GroupTransport) Consumer() <-chan raft.RPC { return g.consumeCh }

// LocalAddr implements raft.Transport.
func (g *GroupTransport) LocalAddr() raft.ServerAddress { return g.m.addr }

// SetHeartbeatHandler implements raft.Transport.
func (g *GroupTransport) SetHeartbeatHandler(cb func(rpc raft.RPC)) {
	g.hbMu.Lock()
	g.hbFn = cb
	g.hbMu.Unlock()
}

// EncodePeer implements raft.Transport.
func (g *GroupTransport) EncodePeer(_ raft.ServerID, addr raft.ServerAddress) []byte {
	return []byte(addr)
}

// DecodePeer implements raft.Transport.
func (g *GroupTransport) DecodePeer(b []byte) raft.ServerAddress { return raft.ServerAddress(b) }

// Close removes the group from the Mux; other groups are unaffected.
func (g *GroupTransport) Close() error {
	g.cancel()
	g.m.mu.Lock()
	if g.m.groups[g.name] == g {
		delete(g.m.groups, g.name)
	}
	g.m.mu.Unlock()
	return nil
}

// AppendEntries implements raft.Transport.
func (g *GroupTransport) AppendEntries(_ raft.ServerID, target raft.ServerAddress, args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) error {
	rpc, mode := rpcAppendEntries, sendNow
	if isHeartbeat(args) {
		rpc, mode = rpcHeartbeat, sendLazy
	} else if len(args.Entries) == 0 {
		mode = sendLazy // only tells the follower the commit index
	}
	return g.callMode(target, rpc, mode, args, resp)
}

// RequestVote implements raft.Transport.
func (g *GroupTransport) RequestVote(_ raft.ServerID, target raft.ServerAddress, args *raft.RequestVoteRequest, resp *raft.RequestVoteResponse) error {
	if g.sitsOut() != nil {
		*resp = raft.RequestVoteResponse{Term: args.Term}
		return nil
	}
	return g.electionCall(target, rpcRequestVote, args, resp)
}

// RequestPreVote implements raft.WithPreVote.
func (g *GroupTransport) RequestPreVote(_ raft.ServerID, target raft.ServerAddress, args *raft.RequestPreVoteRequest, resp *raft.RequestPreVoteResponse) error {
	if g.sitsOut() != nil {
		*resp = raft.RequestPreVoteResponse{Term: args.Term}
		return nil
	}
	return g.electionCall(target, rpcRequestPreVote, args, resp)
}

// The members of a new group open at about the same time, and raft counts a vote
// request that fails as refused: the first member to stand, asking peers that have not
// opened the group yet, would lose and stand again only an election timeout later
// (seconds for many idle groups). So a vote or pre-vote keeps asking a peer that
// answers "unknown group" for up to openWait, every openRetry.
const (
	openWait  = time.Second
	openRetry = 50 * time.Millisecond
)

func (g *GroupTransport) electionCall(target raft.ServerAddress, rpc byte, args, resp any) error {
	deadline := time.Now().Add(openWait)
	for {
		err := g.call(target, rpc, args, resp)
		if !errors.Is(err, ErrUnknownGroup) || time.Now().After(deadline) {
			return err
		}
		t := time.NewTimer(openRetry)
		select {
		case <-t.C:
		case <-g.ctx.Done():
			t.Stop()
			return raft.ErrTransportShutdown
		}
	}
}

// TimeoutNow implements raft.Transport.
func (g *GroupTransport) TimeoutNow(_ raft.ServerID, target raft.ServerAddress, args *raft.TimeoutNowRequest, resp *raft.TimeoutNowResponse) error {
	return g.call(target, rpcTimeoutNow, args, resp)
}

// isHeartbeat is NetworkTransport's test for the heartbeat fast path.
func isHeartbeat(req *raft.AppendEntriesRequest) bool {
	leaderAddr := req.RPCHeader.Addr
	if len(leaderAddr) == 0 {
		leaderAddr = req.Leader //nolint:staticcheck // older peers only set Leader
	}
	return req.Term != 0 && leaderAddr != nil &&
		req.PrevLogEntry == 0 && req.PrevLogTerm == 0 &&
		len(req.Entries) == 0 && req.LeaderCommitIndex == 0
}

// call is a plain request/response raft RPC bounded by the Mux timeout.
func (g *GroupTransport) call(target raft.ServerAddress, rpc byte, args, resp any) error {
	return g.callMode(target, rpc, sendNow, args, resp)
}

func (g *GroupTransport) callMode(target raft.ServerAddress, rpc byte, mode sendMode, args, resp any) error {
	if g.ctx.Err() != nil {
		return raft.ErrTransportShutdown
	}
	req, err := raftRequestFrame(rpc, g.name, args)
	if err != nil {
		return err
	}
	ln := controlLane
	if rpc == rpcAppendEntries {
		ln = dataLane
	}
	f, err := g.m.roundTrip(g.ctx, target, ln, req, mode, g) // the reaper bounds the wait
	if err != nil {
		if g.ctx.Err() != nil {
			return raft.ErrTransportShutdown
		}
		return err
	}
	return g.decodeResponse(target, f, resp)
}

func (g *GroupTransport) decodeResponse(target raft.ServerAddress, f frame, resp any) error {
	if f.kind == kindError {
		return remoteErr(target, g.name, "", f)
	}
	if err := decodePayload(f.payload, resp); err != nil {
		return fmt.Errorf("transport: decode response from %s: %w", target, err)
	}
	return nil
}

// enqueue hands a request to raft in arrival order without blocking the
// connection's reader.
func (g *GroupTransport) enqueue(in inbound) {
	g.qMu.Lock()
	g.queue = append(g.queue, in)
	start := !g.draining
	g.draining = true
	g.qMu.Unlock()
	if start {
		go g.drain()
	}
}

func (g *GroupTransport) drain() {
	for {
		g.qMu.Lock()
		if len(g.queue) == 0 {
			g.queue = nil
			g.draining = false
			g.qMu.Unlock()
			return
		}
		in := g.queue[0]
		g.queue[0] = inbound{}
		g.queue = g.queue[1:]
		g.qMu.Unlock()
		g.serve(in.c, in.f, nil)
	}
}

// serve decodes one request, gives it to raft and sends raft's answer back.
// body is the snapshot stream for InstallSnapshot.
func (g *GroupTransport) serve(c *conn, f frame, body io.Reader) {
	cmd, err := decodeCommand(f)
	if err == nil {
		err = c.checkSender(cmd.(raft.WithRPCHeader))
	}
	if err != nil {
		c.close(err) // a peer that sends undecodable or forged requests is not trusted further
		return
	}
	if resp, ok := g.refuseElection(cmd); ok {
		g.reply(c, f.id, resp, sendNow)
		return
	}
	respCh := make(chan raft.RPCResponse, 1)
	rpc := raft.RPC{Command: cmd, Reader: body, RespChan: respCh}
	select {
	case g.consumeCh <- rpc:
	case <-g.ctx.Done():
		c.send(shutdownFrame(f.id))
		return
	}
	select {
	case resp := <-respCh:
		g.reply(c, f.id, resp, sendNow)
	case <-g.ctx.Done():
		c.send(shutdownFrame(f.id))
	}
}

// serveHeartbeats runs the heartbeat fast path for the heartbeats that came
// in one read, off the connection's reader: raft's handler may touch the disk
// (a new term), which must not stall the other groups' traffic. The answers
// go out together in one write.
func serveHeartbeats(c *conn, batch []inbound) {
	// Deferred: a node restarting raft may end this goroutine inside raft's handler
	// (election/restart.go); the answers already pushed still go out.
	defer c.kick()
	// raft answers a heartbeat before its handler returns, so one response
	// channel and one allocation of requests serve the whole batch.
	respCh := make(chan raft.RPCResponse, 1)
	reqs := make([]raft.AppendEntriesRequest, len(batch))
	for i, in := range batch {
		in.g.serveHeartbeat(c, in.f, &reqs[i], respCh)
	}
}

func (g *GroupTransport) serveHeartbeat(c *conn, f frame, req *raft.AppendEntriesRequest, respCh chan raft.RPCResponse) {
	g.hbMu.Lock()
	fn := g.hbFn
	g.hbMu.Unlock()
	if fn == nil {
		f.rpc = rpcAppendEntries
		g.enqueue(inbound{c: c, f: f})
		return
	}
	if err := decodePayload(f.payload, req); err != nil {
		c.close(fmt.Errorf("%w: heartbeat: %v", errBadFrame, err))
		return
	}
	if err := c.checkSender(req); err != nil {
		c.close(err)
		return
	}
	if !isHeartbeat(req) {
		f.rpc = rpcAppendEntries
		g.enqueue(inbound{c: c, f: f})
		return
	}
	if p := g.probe.Load(); p == nil || !(*p)(req.Term) {
		// Raft will write the term to disk first: the heartbeats after this one in the
		// batch must not wait for that write (seconds while many groups elect at once),
		// or their leaders lose their leases, and their elections write more terms.
		go func() {
			defer c.kick()
			g.answerHeartbeat(c, f.id, fn, req, make(chan raft.RPCResponse, 1))
		}()
		return
	}
	g.answerHeartbeat(c, f.id, fn, req, respCh)
}

func (g *GroupTransport) answerHeartbeat(c *conn, id uint64, fn func(raft.RPC), req *raft.AppendEntriesRequest, respCh chan raft.RPCResponse) {
	fn(raft.RPC{Command: req, RespChan: respCh})
	// raft answers synchronously, or not at all once it has shut down.
	select {
	case resp := <-respCh:
		g.reply(c, id, resp, sendHold)
	default:
		c.push(shutdownFrame(id), sendHold, nil)
	}
}

// SetHeartbeatProbe tells the transport whether raft can answer a heartbeat of a term
// without writing to disk first (it writes when the term is new to it, or when it is
// not a follower): such heartbeats are answered in line with the others that came in
// the same read, the rest each on its own.
func (g *GroupTransport) SetHeartbeatProbe(inMemory func(term uint64) bool) {
	g.probe.Store(&inMemory)
}

func (g *GroupTransport) reply(c *conn, id uint64, resp raft.RPCResponse, mode sendMode) {
	if resp.Error != nil {
		c.push(errorFrame(id, codeRaft, resp.Error.Error()), mode, nil)
		return
	}
	b, err := raftResponseFrame(id, resp.Response)
	if err != nil {
		b = errorFrame(id, codeRaft, err.Error())
	}
	c.push(b, mode, nil)
}

// errForged: a raft request names a sender other than the one its connection's
// certificate names.
var errForged = errors.New("transport: raft request sent under another server's ID")

// checkSender holds a raft request's claimed sender to the peer's certificate.
func (c *conn) checkSender(req raft.WithRPCHeader) error {
	if c.peerID == "" {
		return nil
	}
	if id := string(req.GetRPCHeader().ID); id != c.peerID {
		return fmt.Errorf("%w: %q over a connection of %q", errForged, id, c.peerID)
	}
	return nil
}

func decodeCommand(f frame) (any, error) {
	var cmd any
	switch f.rpc {
	case rpcAppendEntries, rpcHeartbeat:
		cmd = new(raft.AppendEntriesRequest)
	case rpcRequestVote:
		cmd = new(raft.RequestVoteRequest)
	case rpcRequestPreVote:
		cmd = new(raft.RequestPreVoteRequest)
	case rpcTimeoutNow:
		cmd = new(raft.TimeoutNowRequest)
	case rpcInstallSnapshot:
		cmd = new(raft.InstallSnapshotRequest)
	default:
		return nil, fmt.Errorf("%w: rpc type %d is not a raft command", errBadFrame, f.rpc)
	}
	if err := decodePayload(f.payload, cmd); err != nil {
		return nil, fmt.Errorf("%w: decode rpc type %d: %v", errBadFrame, f.rpc, err)
	}
	return cmd, nil
}
