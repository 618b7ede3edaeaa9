package atm_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"syscall"
	"testing"
	"time"

	"github.com/quorumq/quorumq/atm"
	"github.com/quorumq/quorumq/atm/atmapi"
)

// retryUntilApplied sends a deposit under key to the ATMs in turn until one answers it,
// as an HTTP client that retries after errors and timeouts does.
func retryUntilApplied(t *testing.T, procs []*atmProc, key, name, amount string) atmapi.BalanceResponse {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for i := 0; time.Now().Before(deadline); i++ {
		a := procs[i%len(procs)]
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		r, err := a.client().WithKey(key).Deposit(ctx, name, amount)
		cancel()
		if err == nil {
			return r
		}
		t.Logf("retry of %s on %s: %v", key, a.id, err)
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("deposit %s never answered", key)
	return atmapi.BalanceResponse{}
}

// balanceEverywhere checks that every ATM in procs reports want for name (linearizable
// reads, so after a write that followed everything else).
func balanceEverywhere(t *testing.T, procs []*atmProc, name, want string) {
	t.Helper()
	for _, a := range procs {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		r, err := a.client().Balance(ctx, name)
		cancel()
		if err != nil || r.Balance != want {
			t.Fatalf("%s: balance %s = %+v, %v; want %s", a.id, name, r, err, want)
		}
	}
}

// TestNoQuorumAnswerIsTrue stops both followers (SIGSTOP) under a deposit to the leader.
// The leader cannot commit, so the answer is a 503; it must say unknown unless the
// deposit can never be applied, which is checked after SIGCONT. Odd trials send no key
// (so the answer is about that request alone); even trials send an Idempotency-Key and
// retry under it until answered, which applies each deposit exactly once.
func TestNoQuorumAnswerIsTrue(t *testing.T) {
	atms := startATMs(t, 3)
	const trials = 4
	outcomes := map[string]int{}
	var want int // alice's balance in cents
	balance := func() int {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		r, err := atms[0].client().Balance(ctx, "alice")
		var ae *atm.APIError
		if errors.As(err, &ae) && ae.Reason == "unknown_account" {
			return 0
		}
		if err != nil {
			t.Fatal(err)
		}
		return int(r.Cents)
	}
	for i := 1; i <= trials; i++ {
		leader := leaderOf(t, atms)
		followers := without(atms, leader)
		keyed := i%2 == 0
		cl, key := leader.client(), fmt.Sprintf("no-quorum-%d", i)
		if keyed {
			cl = cl.WithKey(key)
		}
		signalAll(t, followers, syscall.SIGSTOP)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		_, err := cl.Deposit(ctx, "alice", "1")
		cancel()
		signalAll(t, followers, syscall.SIGCONT)
		var ae *atm.APIError
		if !errors.As(err, &ae) || ae.HTTPStatus != 503 || (ae.Outcome != atm.OutcomeUnknown && ae.Outcome != atm.OutcomeNotApplied) {
			t.Fatalf("trial %d: deposit without quorum answered %v (%+v), want a 503 with an outcome", i, err, ae)
		}
		// A write after the followers are back commits after anything left in the log.
		retryUntilApplied(t, atms, fmt.Sprintf("probe-%d", i), "probe", "1")
		got := balance()
		applied := got == want+100
		if got != want && !applied {
			t.Fatalf("trial %d: alice has %d cents, want %d or %d", i, got, want, want+100)
		}
		if ae.Outcome == atm.OutcomeNotApplied && applied {
			t.Fatalf("trial %d: answered not_applied, then applied", i)
		}
		outcomes[fmt.Sprintf("%s (applied: %v)", ae.Outcome, applied)]++
		before := want
		want = got
		if keyed {
			// Applied or not so far, the retry makes it applied exactly once.
			want = before + 100
			if r := retryUntilApplied(t, atms, key, "alice", "1"); int(r.Cents) != want {
				t.Fatalf("trial %d: the retry under %s answered %+v, want alice at %d cents", i, key, r, want)
			}
		}
	}
	balanceEverywhere(t, atms, "alice", fmt.Sprintf("%d.%02d", want/100, want%100))
	t.Logf("outcomes without quorum: %v", outcomes)
}

// TestRetryAcrossLeaderKill: a client sends a deposit to the leader, which is SIGKILLed
// before or after it answers; the client retries under the same Idempotency-Key on the
// others until answered. In odd rounds the kill comes 0-20 ms after the send; in even
// rounds both followers are stopped first (SIGSTOP), so the deposit is in the leader's
// log only, uncommitted, when the leader dies. Each deposit is applied once, and the
// restarted ATM (its key table rebuilt from its log and snapshot) answers another retry
// the same way without applying it.
func TestRetryAcrossLeaderKill(t *testing.T) {
	atms := startATMs(t, 3)
	const rounds = 4
	for i := 1; i <= rounds; i++ {
		leader := leaderOf(t, atms)
		live := without(atms, leader)
		stopped := i%2 == 0
		if stopped {
			signalAll(t, live, syscall.SIGSTOP)
		}
		key := fmt.Sprintf("kill-%d", i)
		sent := make(chan error, 1)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_, err := leader.client().WithKey(key).Deposit(ctx, "bob", "1")
			sent <- err
		}()
		if stopped {
			time.Sleep(300 * time.Millisecond)
		} else {
			time.Sleep(time.Duration(rand.IntN(20)) * time.Millisecond)
		}
		leader.p.Kill()
		if stopped {
			signalAll(t, live, syscall.SIGCONT)
		}
		t.Logf("round %d (followers stopped: %v): killed leader %s; its answer: %v", i, stopped, leader.id, <-sent)
		want := fmt.Sprintf("%d.00", i)
		if r := retryUntilApplied(t, live, key, "bob", "1"); r.Balance != want {
			t.Fatalf("round %d: retry answered %+v, want bob %s", i, r, want)
		}
		leader.start(t)
		leader.waitReady(t)
		if r := retryUntilApplied(t, []*atmProc{leader}, key, "bob", "1"); r.Balance != want {
			t.Fatalf("round %d: the restarted %s answered the retry with %+v, want bob %s", i, leader.id, r, want)
		}
		balanceEverywhere(t, atms, "bob", want)
	}
}

func signalAll(t *testing.T, procs []*atmProc, sig syscall.Signal) {
	t.Helper()
	for _, a := range procs {
		if err := a.p.Signal(sig); err != nil {
			t.Fatalf("%s: %v: %v", a.id, sig, err)
		}
	}
}
