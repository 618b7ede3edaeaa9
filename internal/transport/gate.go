package transport

import (
	"context"
	"sync/atomic"

	"github.com/hashicorp/raft"
)

// electionGate holds the function that says whether a group's member sits out elections.
type electionGate struct{ fn atomic.Pointer[func() error] }

// SetElectionGate makes this group's member sit out elections while sitOut returns an
// error (a member recovering from a storage fault): vote and pre-vote requests from
// candidates are answered "not granted" here, before raft sees them (so no vote is
// persisted and no candidate's term adopted); the member's own vote and pre-vote requests
// are answered "not granted" here too, without being sent, so it never wins an election
// (with pre-vote its term does not even grow); and TimeoutNow, a leader handing it the
// leadership, is refused. The group elects without it whenever a majority of the others
// can. Refusing at the transport works with no leader at all, which demoting the member to
// non-voter would not.
func (g *GroupTransport) SetElectionGate(sitOut func() error) { g.gate.fn.Store(&sitOut) }

func (g *GroupTransport) sitsOut() error {
	if f := g.gate.fn.Load(); f != nil {
		return (*f)()
	}
	return nil
}

// refuseElection answers an incoming election request itself while the member sits out.
func (g *GroupTransport) refuseElection(cmd any) (raft.RPCResponse, bool) {
	switch req := cmd.(type) {
	case *raft.RequestVoteRequest:
		if g.sitsOut() != nil {
			return raft.RPCResponse{Response: &raft.RequestVoteResponse{Term: req.Term}}, true
		}
	case *raft.RequestPreVoteRequest:
		if g.sitsOut() != nil {
			return raft.RPCResponse{Response: &raft.RequestPreVoteResponse{Term: req.Term}}, true
		}
	case *raft.TimeoutNowRequest:
		if err := g.sitsOut(); err != nil {
			return raft.RPCResponse{Error: err}, true
		}
	}
	return raft.RPCResponse{}, false
}

// TimeoutNowLocal hands this group's raft a TimeoutNow request as if its leader had sent
// one (header names this member): raft stands for election at once, without a pre-vote,
// and voters grant their vote even while they still know a leader. The election gate
// refuses it like a remote one while the member sits out.
func (g *GroupTransport) TimeoutNowLocal(ctx context.Context, header raft.RPCHeader) error {
	cmd := &raft.TimeoutNowRequest{RPCHeader: header}
	if resp, ok := g.refuseElection(cmd); ok {
		return resp.Error
	}
	respCh := make(chan raft.RPCResponse, 1)
	select {
	case g.consumeCh <- raft.RPC{Command: cmd, RespChan: respCh}:
	case <-g.ctx.Done():
		return ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case resp := <-respCh:
		return resp.Error
	case <-g.ctx.Done():
		return ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
}
