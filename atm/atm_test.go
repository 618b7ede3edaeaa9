package atm

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/quorumq/quorumq/atm/bank"
)

func TestLostReplyIsRetriedExactlyOnce(t *testing.T) {
	a, node := newLocalATM(t, 5*time.Second)
	ctx := context.Background()
	node.set(func(n *localNode) { n.loseReplies = 3 })
	bal, err := a.Deposit(ctx, "", "alice", 100)
	if err != nil || bal != 100 {
		t.Fatalf("deposit after lost replies = %d, %v; want 100", bal, err)
	}
	if got := len(node.entries); got != 4 {
		t.Fatalf("entries applied = %d, want 4 (1 + 3 retries)", got)
	}
	if c, _ := a.bank.Balance("alice"); c != 100 {
		t.Fatalf("balance %d after retries, want 100 (applied once)", c)
	}
}

func TestConcurrentOpsAreBatched(t *testing.T) {
	a, node := newLocalATM(t, 10*time.Second)
	node.set(func(n *localNode) { n.delay = 5 * time.Millisecond })
	ctx := context.Background()
	const clients = 200
	var wg sync.WaitGroup
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := a.Deposit(ctx, "", fmt.Sprintf("acct%d", i%5), 1); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	var total int64
	for _, acc := range a.bank.Accounts() {
		total += acc.Cents
	}
	if total != clients {
		t.Fatalf("total = %d, want %d", total, clients)
	}
	largest := 0
	for _, n := range node.entries {
		largest = max(largest, n)
	}
	t.Logf("%d ops in %d entries, largest %d", clients, len(node.entries), largest)
	if largest < 2 {
		t.Fatalf("no entry carried more than one op: %v", node.entries)
	}
}

func TestNoQuorumFailsFast(t *testing.T) {
	a, node := newLocalATM(t, 500*time.Millisecond)
	node.set(func(n *localNode) { n.down = true })
	ctx := context.Background()
	start := time.Now()
	_, err := a.Deposit(ctx, "", "alice", 1)
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("deposit without quorum: %v, want ErrUnavailable", err)
	}
	if _, err := a.Balance(ctx, "alice"); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("balance without quorum: %v, want ErrUnavailable", err)
	}
	// Generous bound: the point is that it returns, not how fast.
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("took %v", d)
	}
	// Stale reads answer from local state even without quorum.
	a.stale = true
	if _, err := a.Balance(ctx, "alice"); !errors.Is(err, bank.ErrUnknownAccount) {
		t.Fatalf("stale balance without quorum: %v, want a local answer (unknown account)", err)
	}
	a.stale = false
	// The group comes back: the ATM works again.
	node.set(func(n *localNode) { n.down = false })
	if _, err := a.Deposit(ctx, "", "alice", 1); err != nil {
		t.Fatal(err)
	}
}

func TestRefusalsNameTheAccount(t *testing.T) {
	a, _ := newLocalATM(t, 5*time.Second)
	ctx := context.Background()
	if _, err := a.Deposit(ctx, "", "alice", 500); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		do      func() error
		wantErr error
		wantMsg string
	}{
		{"insufficient", func() error { _, err := a.Withdraw(ctx, "", "alice", 501); return err }, bank.ErrInsufficientFunds, "insufficient funds: alice has 5.00, needs 5.01"},
		{"unknown from", func() error { _, _, err := a.Transfer(ctx, "", "bob", "alice", 1); return err }, bank.ErrUnknownAccount, "unknown account: bob"},
		{"same", func() error { _, _, err := a.Transfer(ctx, "", "alice", "alice", 1); return err }, bank.ErrSameAccount, ""},
		{"zero", func() error { _, err := a.Deposit(ctx, "", "alice", 0); return err }, bank.ErrInvalidAmount, ""},
		{"bad name", func() error { _, err := a.Deposit(ctx, "", "a b", 1); return err }, bank.ErrInvalidName, ""},
		{"unknown balance", func() error { _, err := a.Balance(ctx, "zed"); return err }, bank.ErrUnknownAccount, "unknown account: zed"},
	}
	for _, tt := range tests {
		err := tt.do()
		if !errors.Is(err, tt.wantErr) || (tt.wantMsg != "" && err.Error() != tt.wantMsg) {
			t.Errorf("%s: %v, want %v %q", tt.name, err, tt.wantErr, tt.wantMsg)
		}
	}
	if c, _ := a.bank.Balance("alice"); c != 500 {
		t.Fatalf("refusals changed state: alice=%d", c)
	}
}

// TestOutcomes: a failed write says not_applied only when it can never be applied, and
// a retry under the same idempotency key applies nothing twice.
func TestOutcomes(t *testing.T) {
	tests := []struct {
		name string
		// fail sets the node up to fail the deposit; callerTimeout bounds the caller
		// (the batcher's own timeout is 500ms).
		fail          func(n *localNode)
		callerTimeout time.Duration
		key           string
		want          string
	}{
		{"no leader", func(n *localNode) { n.down = true }, time.Second, "", OutcomeNotApplied},
		// With a key, the answer covers every attempt under it, and an earlier attempt
		// (to a leader that died, say) may still commit.
		{"no leader, with a key", func(n *localNode) { n.down = true }, time.Second, "k1", OutcomeUnknown},
		{"entry in the log, no commit", func(n *localNode) { n.stall = true }, time.Second, "k1", OutcomeUnknown},
		// The caller gives up while the lane still commits its entry: the root cause of
		// 503s applied later (the batcher's clock started after the caller's).
		{"caller gives up during the commit", func(n *localNode) { n.stall = true }, 200 * time.Millisecond, "", OutcomeUnknown},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, node := newLocalATM(t, 500*time.Millisecond)
			node.set(tt.fail)
			ctx, cancel := context.WithTimeout(context.Background(), tt.callerTimeout)
			_, err := a.Deposit(ctx, tt.key, "alice", 100)
			cancel()
			if got := OutcomeOf(err); err == nil || got != tt.want {
				t.Fatalf("deposit: %v, outcome %s; want %s", err, got, tt.want)
			}
			node.set(func(n *localNode) { n.down = false })
			node.resume()
			bal, applied := a.bank.Balance("alice")
			if tt.want == OutcomeNotApplied && applied {
				t.Fatalf("answered not_applied, then applied: alice=%d", bal)
			}
			if tt.key == "" {
				return
			}
			// The client retries under the same key: applied once in all.
			for range 2 {
				if bal, err := a.Deposit(context.Background(), tt.key, "alice", 100); err != nil || bal != 100 {
					t.Fatalf("retry with the same key: %d, %v; want 100", bal, err)
				}
			}
			if bal, _ := a.bank.Balance("alice"); bal != 100 {
				t.Fatalf("alice=%d after retries, want 100", bal)
			}
		})
	}
}
