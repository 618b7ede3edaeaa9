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
	bal, err := a.Deposit(ctx, "alice", 100)
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
			if _, err := a.Deposit(ctx, fmt.Sprintf("acct%d", i%5), 1); err != nil {
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
	_, err := a.Deposit(ctx, "alice", 1)
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
	if _, err := a.Deposit(ctx, "alice", 1); err != nil {
		t.Fatal(err)
	}
}

func TestRefusalsNameTheAccount(t *testing.T) {
	a, _ := newLocalATM(t, 5*time.Second)
	ctx := context.Background()
	if _, err := a.Deposit(ctx, "alice", 500); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		do      func() error
		wantErr error
		wantMsg string
	}{
		{"insufficient", func() error { _, err := a.Withdraw(ctx, "alice", 501); return err }, bank.ErrInsufficientFunds, "insufficient funds: alice has 5.00, needs 5.01"},
		{"unknown from", func() error { _, _, err := a.Transfer(ctx, "bob", "alice", 1); return err }, bank.ErrUnknownAccount, "unknown account: bob"},
		{"same", func() error { _, _, err := a.Transfer(ctx, "alice", "alice", 1); return err }, bank.ErrSameAccount, ""},
		{"zero", func() error { _, err := a.Deposit(ctx, "alice", 0); return err }, bank.ErrInvalidAmount, ""},
		{"bad name", func() error { _, err := a.Deposit(ctx, "a b", 1); return err }, bank.ErrInvalidName, ""},
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
