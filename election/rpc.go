package election

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"slices"
	"time"

	"github.com/hashicorp/raft"

	"github.com/quorumq/quorumq/internal/retry"
	"github.com/quorumq/quorumq/internal/transport"
)

// Methods this package serves on the Mux, per group.
const (
	methodApply     = "apply"
	methodReadIndex = "readindex"
	methodAddVoter  = "addvoter"
	methodRemove    = "remove"
	methodJoin      = "join"
)

// Every reply starts with one of these codes, so the caller can tell "not applied, try the
// new leader" from "maybe applied" without parsing messages.
const (
	codeOK        byte = iota // payload follows
	codeNil                   // the FSM returned nil
	codeFSMError              // the FSM returned an error value; message follows
	codeNotLeader             // the request was not acted on; retry against the leader
	codeUnknown               // the outcome is unknown; message follows
	codeFailed                // the request failed; message follows
	codePending               // join: this member knows no configuration yet (raft not started, or not bootstrapped)
)

// ApplyError is an error an FSM returned on the leader for a command forwarded to it. It
// matches (errors.Is) any error with the same message, so an FSM's sentinel errors work
// across the forward.
type ApplyError struct{ Msg string }

func (e *ApplyError) Error() string        { return e.Msg }
func (e *ApplyError) Is(target error) bool { return target != nil && target.Error() == e.Msg }

// fsmError marks an error value the local FSM returned, to keep it apart from raft errors.
type fsmError struct{ err error }

func (e *fsmError) Error() string { return e.err.Error() }
func (e *fsmError) Unwrap() error { return e.err }

// retriable means the request was certainly not acted on and may go to the (new) leader.
// noLeader says whether the reason was the leader being unknown, unreachable or moving.
type retriable struct {
	why      error
	noLeader bool
}

func (e *retriable) Error() string { return e.why.Error() }
func (e *retriable) Unwrap() error { return e.why }

func retryNoLeader(why error) error { return &retriable{why: why, noLeader: true} }

// classify maps a raft error of a leader-side operation to this package's errors.
// mutating says whether the operation may have taken effect despite the error.
func classify(err error, mutating bool) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipTransferInProgress):
		return retryNoLeader(err)
	case errors.Is(err, raft.ErrEnqueueTimeout):
		return &retriable{why: err}
	case errors.Is(err, raft.ErrRaftShutdown):
		return ErrClosed
	case !mutating && errors.Is(err, raft.ErrLeadershipLost):
		return retryNoLeader(err)
	case mutating:
		return fmt.Errorf("%w: %w", ErrUnknownOutcome, err)
	default:
		return err
	}
}

// op is one request that only the leader can serve.
type op struct {
	method     string
	req        []byte
	local      func(ctx context.Context) ([]byte, error)
	idempotent bool // safe to resend when the connection broke after sending
}

// onLeader runs o on the leader: locally when this node leads, else through the Mux. It
// retries while the leader is unknown, moving or unreachable, until ctx ends.
func (n *Node) onLeader(ctx context.Context, o op) ([]byte, error) {
	b := retry.Policy{First: 10 * time.Millisecond, Max: 200 * time.Millisecond}.Start()
	for {
		r := n.Raft()
		var res []byte
		var err error
		if r.State() == raft.Leader {
			res, err = o.local(ctx)
		} else if addr, _ := r.LeaderWithID(); addr != "" {
			res, err = n.forward(ctx, addr, o)
		} else {
			err = retryNoLeader(errors.New("leader unknown"))
		}
		var rt *retriable
		if !errors.As(err, &rt) {
			return res, err
		}
		wait, _ := b.Next()
		if perr := n.pause(ctx, wait); perr != nil {
			if rt.noLeader {
				return nil, n.noLeader(perr)
			}
			return nil, fmt.Errorf("election: group %q: %w (last: %v)", n.cfg.Group, perr, rt.why)
		}
	}
}

// forward sends o to the leader at addr and decodes the reply.
func (n *Node) forward(ctx context.Context, addr raft.ServerAddress, o op) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, retryNoLeader(err)
	}
	resp, err := n.cfg.Mux.Call(ctx, addr, n.cfg.Group, o.method, o.req)
	if err != nil {
		if ctx.Err() != nil && !o.idempotent {
			return nil, fmt.Errorf("%w: %w", ErrUnknownOutcome, err)
		}
		if o.idempotent || notDelivered(err) {
			return nil, retryNoLeader(err)
		}
		return nil, fmt.Errorf("%w: %w", ErrUnknownOutcome, err)
	}
	return decodeReply(resp)
}

// notDelivered reports whether a Call error shows the request never reached a handler.
func notDelivered(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial" ||
		errors.Is(err, transport.ErrUnknownGroup) ||
		errors.Is(err, transport.ErrUnknownMethod) ||
		errors.Is(err, transport.ErrClosed)
}

func reply(code byte, payload []byte) []byte { return append([]byte{code}, payload...) }

// encodeReply turns a local result into the wire reply a forwarding member decodes.
func encodeReply(res []byte, err error) []byte {
	var rt *retriable
	var fe *fsmError
	switch {
	case err == nil && res == nil:
		return reply(codeNil, nil)
	case err == nil:
		return reply(codeOK, res)
	case errors.As(err, &fe):
		return reply(codeFSMError, []byte(fe.Error()))
	case errors.As(err, &rt):
		return reply(codeNotLeader, []byte(err.Error()))
	case errors.Is(err, ErrUnknownOutcome):
		return reply(codeUnknown, []byte(err.Error()))
	default:
		return reply(codeFailed, []byte(err.Error()))
	}
}

func decodeReply(b []byte) ([]byte, error) {
	if len(b) == 0 {
		return nil, errors.New("election: empty reply")
	}
	msg := string(b[1:])
	switch b[0] {
	case codeOK:
		return b[1:], nil
	case codeNil:
		return nil, nil
	case codeFSMError:
		return nil, &ApplyError{Msg: msg}
	case codeNotLeader:
		return nil, retryNoLeader(errors.New(msg))
	case codeUnknown:
		return nil, fmt.Errorf("%w (on leader: %s)", ErrUnknownOutcome, msg)
	case codePending:
		return nil, errPending
	default:
		return nil, errors.New(msg)
	}
}

var errPending = errors.New("election: member knows no configuration yet")

func (n *Node) registerHandlers() {
	m, g := n.cfg.Mux, n.cfg.Group
	m.Handle(g, methodApply, n.serve(n.applyLocal))
	m.Handle(g, methodReadIndex, n.serve(func(ctx context.Context, _ []byte) ([]byte, error) {
		return n.readIndexLocal(ctx)
	}))
	m.Handle(g, methodCatchUp, n.serve(func(ctx context.Context, _ []byte) ([]byte, error) {
		return n.catchUpLocal(ctx)
	}))
	m.Handle(g, methodAddVoter, n.serve(func(ctx context.Context, req []byte) ([]byte, error) {
		var p Peer
		if err := json.Unmarshal(req, &p); err != nil {
			return nil, err
		}
		return nil, n.addVoterLocal(ctx, p)
	}))
	m.Handle(g, methodRemove, n.serve(func(ctx context.Context, req []byte) ([]byte, error) {
		return nil, n.removeLocal(ctx, string(req))
	}))
	m.Handle(g, methodJoin, func(ctx context.Context, req []byte) ([]byte, error) {
		// Between starting raft and its bootstrap (or, when joining, before the leader's
		// first entries) a member knows no configuration: it can neither admit anyone nor
		// name a leader, and a new group's members, opening at about the same time, asked
		// it and waited out their whole join call (3 s) for a leader that needed their vote.
		if r := n.Raft(); r == nil || len(r.GetConfiguration().Configuration().Servers) == 0 {
			return reply(codePending, nil), nil
		}
		var p Peer
		if err := json.Unmarshal(req, &p); err != nil {
			return nil, err
		}
		// A member joins itself: its certificate, not the request, says who it is.
		if id := transport.PeerID(ctx); id != "" && id != p.ID {
			return nil, fmt.Errorf("election: %q may not join as %q", id, p.ID)
		}
		return encodeReply(n.admit(ctx, p)), nil
	})
}

func (n *Node) unregisterHandlers() {
	for _, method := range []string{methodApply, methodReadIndex, methodCatchUp, methodAddVoter, methodRemove, methodJoin} {
		n.cfg.Mux.Handle(n.cfg.Group, method, nil)
	}
}

// serve wraps a leader-side handler: a member that no longer (or not yet) leads tells the
// caller to retry, so a forward never bounces between followers.
func (n *Node) serve(h func(ctx context.Context, req []byte) ([]byte, error)) transport.Handler {
	return func(ctx context.Context, req []byte) ([]byte, error) {
		if r := n.Raft(); r == nil || r.State() != raft.Leader {
			return reply(codeNotLeader, []byte("not the leader")), nil
		}
		return encodeReply(h(ctx, req)), nil
	}
}

// Apply replicates cmd through the group and returns the FSM's result: the []byte it
// returned, or the error value it returned (an *ApplyError when applied on another
// member). A follower forwards cmd to the leader. Apply retries while there is no leader
// or the leader moves and cmd was certainly not applied; with no leader by ctx's deadline
// it returns ErrNoLeader. When cmd may or may not have been applied it returns
// ErrUnknownOutcome rather than risk applying it twice.
func (n *Node) Apply(ctx context.Context, cmd []byte) ([]byte, error) {
	res, err := n.onLeader(ctx, op{method: methodApply, req: cmd, local: func(ctx context.Context) ([]byte, error) {
		return n.applyLocal(ctx, cmd)
	}})
	var fe *fsmError
	if errors.As(err, &fe) {
		return nil, fe.err
	}
	if errors.Is(err, ErrUnknownOutcome) {
		// The leader failed under this command. Wait until a leader answers again, so that
		// the caller's retry has somewhere to go; none by the deadline means no quorum.
		if _, perr := n.readIndex(ctx); perr != nil {
			return nil, fmt.Errorf("%w; %w", perr, err)
		}
	}
	return res, err
}

func (n *Node) applyLocal(ctx context.Context, cmd []byte) ([]byte, error) {
	if err := n.sitOut(); err != nil {
		return nil, retryNoLeader(err) // it is handing leadership over
	}
	f := n.Raft().Apply(cmd, timeout(ctx))
	if err := wait(ctx, f); err != nil {
		return nil, classify(err, true)
	}
	switch v := f.Response().(type) {
	case nil:
		return nil, nil
	case []byte:
		return v, nil
	case error:
		return nil, &fsmError{v}
	default:
		return nil, fmt.Errorf("election: FSM of group %q returned %T; want []byte, nil or error", n.cfg.Group, v)
	}
}

// ReadBarrier returns once this node's FSM reflects every write completed before the
// call: the leader confirms it still leads and names its commit index (read-index), and
// this node waits until it has applied that far. On a follower of an idle group this can
// take up to the CommitTimeout, which is when followers learn the commit index.
func (n *Node) ReadBarrier(ctx context.Context) error {
	if err := n.sitOut(); err != nil {
		return fmt.Errorf("election: group %q: %w", n.cfg.Group, err)
	}
	res, err := n.readIndex(ctx)
	if err != nil {
		return err
	}
	if len(res) != 8 {
		return fmt.Errorf("election: bad read index reply (%d bytes)", len(res))
	}
	return n.waitApplied(ctx, binary.BigEndian.Uint64(res))
}

// readIndex asks the leader (maybe this node) for its read index.
func (n *Node) readIndex(ctx context.Context) ([]byte, error) {
	return n.onLeader(ctx, op{method: methodReadIndex, idempotent: true, local: n.readIndexLocal})
}

// readIndexLocal returns an index covering every write committed before the call. A new
// leader's commit index may trail what its predecessor committed until an entry of its own
// term commits, so the first read of each term goes through a barrier entry.
func (n *Node) readIndexLocal(ctx context.Context) ([]byte, error) {
	if err := n.sitOut(); err != nil {
		return nil, retryNoLeader(err) // it is handing leadership over
	}
	r := n.Raft()
	term := r.CurrentTerm()
	if n.readyTerm.Load() != term {
		if err := wait(ctx, r.Barrier(timeout(ctx))); err != nil {
			return nil, classify(err, false)
		}
		n.readyTerm.Store(term)
	}
	idx := r.CommitIndex()
	if err := wait(ctx, r.VerifyLeader()); err != nil {
		return nil, classify(err, false)
	}
	return binary.BigEndian.AppendUint64(nil, idx), nil
}

// waitApplied waits until the FSM has applied everything up to target.
func (n *Node) waitApplied(ctx context.Context, target uint64) error {
	// Raft counts entries handed to the FSM goroutine; the FSM may still be behind, and it
	// never sees no-op and barrier entries, so find the last entry it will see.
	if err := n.pollUntil(ctx, target, n.Raft().AppliedIndex); err != nil {
		return err
	}
	need, err := lastFSMEntry(n.logs, target, n.fsm.applied.Load())
	if err != nil {
		return fmt.Errorf("election: group %q: %w", n.cfg.Group, err)
	}
	return n.pollUntil(ctx, need, n.fsm.applied.Load)
}

// pollUntil waits, backing off from 1 to 20 ms, until applied() reaches target.
func (n *Node) pollUntil(ctx context.Context, target uint64, applied func() uint64) error {
	for d := time.Millisecond; applied() < target; d = min(2*d, 20*time.Millisecond) {
		if err := n.pause(ctx, d); err != nil {
			return fmt.Errorf("election: group %q waiting to apply index %d: %w", n.cfg.Group, target, err)
		}
	}
	return nil
}

// AddVoter makes p a voting member; the leader does it, wherever this is called. Adding a
// member that is already a voter at that address does nothing.
func (n *Node) AddVoter(ctx context.Context, p Peer) error {
	req, err := json.Marshal(p)
	if err != nil {
		return err
	}
	_, err = n.onLeader(ctx, op{method: methodAddVoter, req: req, idempotent: true, local: func(ctx context.Context) ([]byte, error) {
		return nil, n.addVoterLocal(ctx, p)
	}})
	return err
}

func (n *Node) addVoterLocal(ctx context.Context, p Peer) error {
	if p.ID == "" || p.Addr == "" {
		return errors.New("election: AddVoter needs the peer's ID and Addr")
	}
	s, err := n.server(ctx, p.ID)
	if err != nil {
		return err
	}
	if s != nil && s.Suffrage == raft.Voter && string(s.Address) == p.Addr {
		return nil
	}
	return classify(wait(ctx, n.Raft().AddVoter(raft.ServerID(p.ID), raft.ServerAddress(p.Addr), 0, timeout(ctx))), false)
}

// RemoveServer removes member id; the leader does it, wherever this is called. Removing
// a member that is not there does nothing.
func (n *Node) RemoveServer(ctx context.Context, id string) error {
	_, err := n.onLeader(ctx, op{method: methodRemove, req: []byte(id), idempotent: true, local: func(ctx context.Context) ([]byte, error) {
		return nil, n.removeLocal(ctx, id)
	}})
	return err
}

func (n *Node) removeLocal(ctx context.Context, id string) error {
	s, err := n.server(ctx, id)
	if err != nil || s == nil {
		return err
	}
	return classify(wait(ctx, n.Raft().RemoveServer(raft.ServerID(id), 0, timeout(ctx))), false)
}

// ErrNotMember is a leadership transfer to a server outside the group.
var ErrNotMember = errors.New("election: no such member")

// TransferLeadership makes member id the leader, and returns once a leader other than
// this node is known (raft waits for id to catch up first). Called on the leader; a
// node that is id already, and leads, has nothing to do.
func (n *Node) TransferLeadership(ctx context.Context, id string) error {
	if id == n.cfg.ID && n.IsLeader() {
		return nil
	}
	s, err := n.server(ctx, id)
	if err != nil {
		return err
	}
	if s == nil {
		return fmt.Errorf("%w: %q in group %q", ErrNotMember, id, n.cfg.Group)
	}
	if err := classify(wait(ctx, n.Raft().LeadershipTransferToServer(s.ID, s.Address)), false); err != nil {
		return err
	}
	// Raft answers once the target was told to campaign; the manager records the
	// leader right after, so wait until the target has won.
	for n.Leader().ID != id {
		if err := n.pause(ctx, 20*time.Millisecond); err != nil {
			return err
		}
	}
	return nil
}

// server returns member id from this node's configuration, or nil.
func (n *Node) server(ctx context.Context, id string) (*raft.Server, error) {
	c, err := n.configuration(ctx)
	if err != nil {
		return nil, classify(err, false)
	}
	for _, s := range c.Servers {
		if string(s.ID) == id {
			return &s, nil
		}
	}
	return nil, nil
}

// admit answers a join request from p. A member already in this node's configuration
// needs nothing from the leader; when it is also in the bootstrap entry (index 1, still in
// the log), that configuration is returned so that p can bootstrap with the identical
// entry and campaign at once. Anyone else is added as a voter by the leader.
func (n *Node) admit(ctx context.Context, p Peer) ([]byte, error) {
	has := func(c raft.Configuration) bool {
		return slices.ContainsFunc(c.Servers, func(s raft.Server) bool {
			return string(s.ID) == p.ID && string(s.Address) == p.Addr
		})
	}
	cur, err := n.configuration(ctx)
	if err != nil {
		return nil, classify(err, false)
	}
	if !has(cur) {
		return nil, n.AddVoter(ctx, p)
	}
	var first raft.Log
	if err := n.logs.GetLog(1, &first); err != nil || first.Type != raft.LogConfiguration {
		return nil, nil
	}
	c := raft.DecodeConfiguration(first.Data)
	if !has(c) {
		return nil, nil
	}
	return json.Marshal(peersOf(c))
}
