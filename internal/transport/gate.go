package transport

import (
	"context"
	"sync/atomic"

	"github.com/hashicorp/raft"
)

// electionGate holds the functions that say whether a group's member sits out elections
// (fn) and whether it may take the leadership a leader hands it (stand).
type electionGate struct{ fn, stand atomic.Pointer[func() error] }

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

// SetStandGate makes this group's member refuse TimeoutNow, a leader handing it the
// leadership, while canStand returns an error (a member raft has not given the group's
// configuration yet); its votes are not touched. Raft's TimeoutNow makes any member a
// candidate, whatever it holds.
func (g *GroupTransport) SetStandGate(canStand func() error) { g.gate.stand.Store(&canStand) }

func (g *GroupTransport) sitsOut() error { return gateErr(&g.gate.fn) }

func gateErr(p *atomic.Pointer[func() error]) error {
	if f := p.Load(); f != nil {
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
		err := g.sitsOut()
		if err == nil {
			err = gateErr(&g.gate.stand)
		}
		if err != nil {
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
