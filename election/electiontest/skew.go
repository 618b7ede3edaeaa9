package electiontest

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/quorumq/quorumq/election"
)

// Skew describes a rolling upgrade for VersionSkew: Known is a command every binary
// knows, Newer one that only the newer binary knows, which it applies as the command
// AsKnown turns it into (the older binary's CheckCommand must refuse Newer).
type Skew struct {
	NewFSM  func(id string) raft.FSM // must implement election.CommandChecker
	Known   []byte
	Newer   []byte
	AsKnown func(cmd []byte) []byte
}

// VersionSkew runs three members, one follower with the older binary: it must halt at
// the newer command (and say so, serve no read, take no snapshot), while the leader and
// the other follower apply on; restarted with the newer binary it catches up.
func VersionSkew(t *testing.T, group string, s Skew) {
	t.Helper()
	var mu sync.Mutex
	older := map[string]*atomic.Bool{}
	c := NewCluster(t, 3, group, func(id string) raft.FSM {
		old := new(atomic.Bool)
		mu.Lock()
		older[id] = old
		mu.Unlock()
		return &skewFSM{FSM: s.NewFSM(id), older: old, skew: s}
	})
	leader := c.Leader(t)
	var followers []int
	for i, n := range c.Nodes {
		if n != leader {
			followers = append(followers, i)
		}
	}
	old, other := followers[0], followers[1]
	mu.Lock()
	older[c.Nodes[old].ID()].Store(true)
	mu.Unlock()

	ctx, cancel := context.WithTimeout(context.Background(), Wait)
	defer cancel()
	for _, cmd := range [][]byte{s.Known, s.Newer, s.Known} {
		if _, err := leader.Apply(ctx, cmd); err != nil {
			t.Fatalf("apply on the leader: %v", err)
		}
	}
	want := leader.AppliedIndex()
	waitFor(t, "the other follower applies everything", func() bool { return c.Nodes[other].AppliedIndex() >= want })
	waitFor(t, "the older follower halts", func() bool { ok, _ := c.Nodes[old].Halted(); return ok })
	_, why := c.Nodes[old].Halted()
	if !strings.Contains(why, "does not know") {
		t.Errorf("halted member says %q; want it to name the unknown command", why)
	}
	if c.Nodes[old].AppliedIndex() >= want {
		t.Errorf("halted member applied through %d, the leader %d", c.Nodes[old].AppliedIndex(), want)
	}
	if err := c.Nodes[old].ReadBarrier(ctx); !errors.Is(err, election.ErrHalted) {
		t.Errorf("read on the halted member: %v; want ErrHalted", err)
	}
	if err := c.Nodes[old].Raft().Snapshot().Error(); err == nil || !strings.Contains(err.Error(), "halted") {
		t.Errorf("snapshot on the halted member: %v; want it refused", err)
	}
	if _, err := leader.Apply(ctx, s.Known); err != nil {
		t.Fatalf("the group stopped writing with one member halted: %v", err)
	}

	c.Kill(old)
	upgraded := c.Restart(t, old) // NewFSM runs again: the newer binary
	want = leader.AppliedIndex()
	waitFor(t, "the upgraded member catches up", func() bool { return upgraded.AppliedIndex() >= want })
	if ok, why := upgraded.Halted(); ok {
		t.Fatalf("upgraded member halted: %s", why)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(Wait); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
	}
}

// skewFSM is a member's FSM under either binary: the newer knows Skew.Newer.
type skewFSM struct {
	raft.FSM
	older *atomic.Bool
	skew  Skew
}

func (f *skewFSM) CheckCommand(cmd []byte) error {
	if !f.older.Load() && bytes.Equal(cmd, f.skew.Newer) {
		return nil
	}
	return f.FSM.(election.CommandChecker).CheckCommand(cmd)
}

func (f *skewFSM) Apply(l *raft.Log) any {
	if bytes.Equal(l.Data, f.skew.Newer) {
		known := *l
		known.Data = f.skew.AsKnown(l.Data)
		l = &known
	}
	return f.FSM.Apply(l)
}
