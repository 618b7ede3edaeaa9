package consul_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/quorumq/quorumq/discovery"
	"github.com/quorumq/quorumq/internal/devtools/consultest"
)

// next reads lists from ch until one satisfies ok; the channel must stay open.
func next(t *testing.T, ch <-chan []discovery.Member, timeout time.Duration, what string, ok func([]discovery.Member) bool) []discovery.Member {
	t.Helper()
	deadline := time.After(timeout)
	var last []discovery.Member
	for {
		select {
		case m, open := <-ch:
			if !open {
				t.Fatalf("watch channel closed while waiting for %s", what)
			}
			t.Logf("watch: %v", m)
			if ok(m) {
				return m
			}
			last = m
		case <-deadline:
			t.Fatalf("no %s within %v (last list %v)", what, timeout, last)
		}
	}
}

func healthOf(id string, h discovery.Health) func([]discovery.Member) bool {
	return func(ms []discovery.Member) bool {
		for _, m := range ms {
			if m.ID == id {
				return m.Health == h
			}
		}
		return false
	}
}

func TestWatchReportsHealthChanges(t *testing.T) {
	agent := consultest.Start(t)
	b := newBackend(t, agent.HTTPAddr(), agent.ManagementToken())
	const svc = discovery.ServiceBroker
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch, err := b.Watch(ctx, svc)
	if err != nil {
		t.Fatal(err)
	}
	next(t, ch, 10*time.Second, "the initial empty list", func(m []discovery.Member) bool { return len(m) == 0 })

	healthy, failing := newHealthServer(t, http.StatusOK), newHealthServer(t, http.StatusOK)
	if err := b.Register(testCtx(t), reg(svc, "i1", healthy, 200*time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	if err := b.Register(testCtx(t), reg(svc, "i2", failing, 200*time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	next(t, ch, 10*time.Second, "both passing", func(m []discovery.Member) bool {
		return healthOf("i1", discovery.Passing)(m) && healthOf("i2", discovery.Passing)(m)
	})

	for _, step := range []struct {
		code int
		want discovery.Health
	}{
		{http.StatusInternalServerError, discovery.Critical},
		{http.StatusOK, discovery.Passing},
		{http.StatusServiceUnavailable, discovery.Critical},
	} {
		failing.set(step.code)
		start := time.Now()
		// Correctness wait only; the delay is logged, never asserted.
		got := next(t, ch, 5*time.Second, "i2 "+string(step.want), healthOf("i2", step.want))
		t.Logf("i2 %s reported %v after the endpoint switched to %d", step.want, time.Since(start), step.code)
		if !healthOf("i1", discovery.Passing)(got) {
			t.Fatalf("i1 should stay passing: %v", got)
		}
	}

	cancel()
	for range ch { // drains until the watch closes the channel
	}
}

// TestWatchSurvivesAgentRestart, with the manager's own token: the restarted dev
// agent, whose ACL state was in memory, takes the same token again.
func TestWatchSurvivesAgentRestart(t *testing.T) {
	agent := consultest.Start(t)
	const svc = discovery.ServiceManager
	token, err := agent.Token(testCtx(t), svc)
	if err != nil {
		t.Fatal(err)
	}
	b := newBackend(t, agent.HTTPAddr(), token)
	h := newHealthServer(t, http.StatusOK)
	r := reg(svc, "i1", h, 200*time.Millisecond)
	if err := b.Register(testCtx(t), r); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch, err := b.Watch(ctx, svc)
	if err != nil {
		t.Fatal(err)
	}
	next(t, ch, 10*time.Second, "i1 passing", healthOf("i1", discovery.Passing))

	oldPid := agent.Pid()
	if err := agent.Restart(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	if agent.Pid() == oldPid || agent.Pid() == 0 {
		t.Fatalf("pid %d after restart, was %d", agent.Pid(), oldPid)
	}
	// Whether the restarted agent still holds the service depends on whether it saved
	// its local state before it stopped, so the owner registers again (idempotent).
	// When it did, the list the watch sees is the one it sent before and it rightly
	// sends nothing (the test failed 1 run in 12 waiting for it), so a second instance,
	// new to this agent, gives the same channel a change it must report.
	if err := b.Register(testCtx(t), r); err != nil {
		t.Fatal(err)
	}
	if err := b.Register(testCtx(t), reg(svc, "i2", newHealthServer(t, http.StatusOK), 200*time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	next(t, ch, 10*time.Second, "i1 and i2 passing after the restart", func(m []discovery.Member) bool {
		return healthOf("i1", discovery.Passing)(m) && healthOf("i2", discovery.Passing)(m)
	})

	// Blocking queries work against the new agent's (lower) indexes.
	h.set(http.StatusInternalServerError)
	start := time.Now()
	next(t, ch, 5*time.Second, "i1 critical after the restart", healthOf("i1", discovery.Critical))
	t.Logf("critical reported %v after the endpoint failed", time.Since(start))
}
