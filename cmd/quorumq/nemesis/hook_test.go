package nemesis

import (
	"context"
	"slices"
	"testing"
	"time"
)

// TestFaultHookPartitionsRealProcesses: the fault files reach real processes. With
// the leading ATM cut off from the other two, they elect one of themselves, and the
// isolated ATM cannot move money; once healed, all three agree again.
func TestFaultHookPartitionsRealProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	b, d := StartBank(t, t.TempDir())
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var old string
	waitUntil(t, ctx, "a leader", func() bool { old = b.leader(ctx); return old != "" })
	i := slices.IndexFunc(d.Procs, func(p *Proc) bool { return p.Name == old })
	rest := []int{(i + 1) % 3, (i + 2) % 3}
	applyLinks(d, split([][]int{{i}, rest}, 3))
	waitUntil(t, ctx, "a new leader among the majority", func() bool {
		for _, j := range rest {
			if st, err := b.atms[j].client().Status(ctx); err == nil && st.State == "leader" {
				return true
			}
		}
		return false
	})
	dctx, dcancel := context.WithTimeout(ctx, 3*time.Second)
	_, err := b.atms[i].client().Deposit(dctx, acct(0), "1.00")
	dcancel()
	if err == nil {
		t.Fatalf("isolated %s took a deposit", old)
	}
	applyLinks(d, nil)
	books, err := b.Books(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(books[0], books[i]) {
		t.Fatalf("after the heal %s has %v, the others %v", old, books[i], books[0])
	}
}

func waitUntil(t *testing.T, ctx context.Context, what string, cond func() bool) {
	t.Helper()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out waiting for %s", what)
		case <-time.After(50 * time.Millisecond):
		}
	}
}
