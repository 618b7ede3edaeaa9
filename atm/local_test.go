package atm

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/quorumq/quorumq/atm/bank"
	"github.com/quorumq/quorumq/election"
)

// localNode stands in for election.Node: Apply goes straight to the bank, as a
// one-member group would. loseReplies makes the next n applies take effect but report
// an error, as a leader change after commit does; down makes every call fail with no
// leader; stall keeps each entry in the "log" unanswered until the caller gives up, and
// commits the kept entries at resume, as a leader cut off from its followers does.
type localNode struct {
	bank *bank.Bank
	mu   sync.Mutex

	loseReplies int
	down        bool
	stall       bool
	stalled     [][]byte
	entries     []int // ops per applied entry
	delay       time.Duration
}

func (n *localNode) Apply(ctx context.Context, cmd []byte) ([]byte, error) {
	n.mu.Lock()
	down, delay, stall := n.down, n.delay, n.stall
	if stall {
		n.stalled = append(n.stalled, cmd)
	}
	n.mu.Unlock()
	if down {
		return nil, election.ErrNoLeader
	}
	if stall {
		<-ctx.Done()
		return nil, fmt.Errorf("%w: %w", election.ErrUnknownOutcome, ctx.Err())
	}
	time.Sleep(delay)
	out := n.bank.Apply(&raft.Log{Data: cmd}).([]byte)
	n.mu.Lock()
	defer n.mu.Unlock()
	if b, err := bank.DecodeBatch(cmd); err == nil {
		n.entries = append(n.entries, len(b.Ops))
	}
	if n.loseReplies > 0 {
		n.loseReplies--
		return nil, election.ErrUnknownOutcome
	}
	return out, nil
}

func (n *localNode) ReadBarrier(ctx context.Context) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.down {
		return election.ErrNoLeader
	}
	return nil
}

func (n *localNode) Leader() election.Peer { return election.Peer{ID: "atm1"} }
func (n *localNode) IsLeader() bool        { return true }
func (n *localNode) Members(context.Context) ([]election.Peer, error) {
	return []election.Peer{{ID: "atm1"}}, nil
}
func (n *localNode) Recovering() (bool, string) { return false, "" }
func (n *localNode) Halted() (bool, string)     { return false, "" }

func (n *localNode) AppliedIndex() uint64 {
	n.mu.Lock()
	defer n.mu.Unlock()
	return uint64(len(n.entries))
}

// resume ends a stall: the kept entries commit, in order.
func (n *localNode) resume() {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.stall = false
	for _, cmd := range n.stalled {
		n.bank.Apply(&raft.Log{Data: cmd})
	}
	n.stalled = nil
}

func (n *localNode) set(f func(n *localNode)) {
	n.mu.Lock()
	defer n.mu.Unlock()
	f(n)
}

// newLocalATM returns an ATM over a localNode, its batcher running until the test ends.
func newLocalATM(t *testing.T, timeout time.Duration) (*ATM, *localNode) {
	t.Helper()
	b := bank.New()
	node := &localNode{bank: b}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	a := &ATM{id: "atm1", node: node, bank: b, timeout: timeout,
		batch: newBatcher(node.Apply, "atm1", 4, 64, timeout, logger)}
	ctx, cancel := context.WithCancel(context.Background())
	a.batch.start(ctx)
	t.Cleanup(func() { cancel(); a.batch.wait() })
	return a, node
}
