package election

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/quorumq/quorumq/internal/transport"
)

func TestRepeatLimiter(t *testing.T) {
	r := &repeatLimiter{every: time.Second, last: map[string]time.Time{}, dropped: map[string]int{}}
	t0 := time.Unix(1000, 0)
	steps := []struct {
		msg         string
		at          time.Duration
		ok          bool
		wantDropped int
	}{
		{"failed to heartbeat to", 0, true, 0},
		{"failed to heartbeat to", 10 * time.Millisecond, false, 0},
		{"failed to heartbeat to", 500 * time.Millisecond, false, 0},
		{"failed to appendEntries to", 600 * time.Millisecond, true, 0}, // another message has its own budget
		{"failed to heartbeat to", 1100 * time.Millisecond, true, 2},
		{"failed to heartbeat to", 2200 * time.Millisecond, true, 0},
	}
	for i, s := range steps {
		ok, dropped := r.allow(s.msg, t0.Add(s.at))
		if ok != s.ok || dropped != s.wantDropped {
			t.Fatalf("step %d (%q at %v): allow = %v, %d; want %v, %d", i, s.msg, s.at, ok, dropped, s.ok, s.wantDropped)
		}
	}
}

// TestPeerDownLoggedPerStateChange: while a peer is down raft complains on every retry;
// the log shows one line when it stops answering and one when it answers again, even
// at --log-level warn, whichever message and form (address, Server, ID) names it.
func TestPeerDownLoggedPerStateChange(t *testing.T) {
	h, buf := warnLogger(t)
	n2 := raft.Server{ID: "n2", Address: "127.0.0.1:7002"}
	for range 5 {
		h.Error("failed to heartbeat to", "peer", n2.Address, "backoff time", time.Second, "error", "connection refused")
		h.Error("failed to appendEntries to", "peer", n2, "error", "connection refused")
		h.Warn("failed to contact", "server-id", n2.ID, "time", time.Second)
		h.Error("failed to make requestVote RPC", "target", n2, "error", "connection refused", "term", 3)
	}
	h.Error("failed to heartbeat to", "peer", raft.ServerAddress("127.0.0.1:7003"), "error", "connection refused")
	h.Info("pipelining replication", "peer", n2)
	h.Error("failed to heartbeat to", "peer", n2.Address, "error", "connection refused")
	h.Info("entering follower state", "leader-address", raft.ServerAddress(""), "leader-id", raft.ServerID(""))
	h.Info("entering follower state", "leader-address", raft.ServerAddress("127.0.0.1:7003"), "leader-id", raft.ServerID("n3"))

	var got []string
	for _, l := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		got = append(got, l[strings.Index(l, "msg="):])
	}
	want := []string{
		`msg="raft: failed to heartbeat to" peer=127.0.0.1:7002`,
		`msg="raft: failed to heartbeat to" peer=127.0.0.1:7003`,
		`msg="peer answers again" peer=127.0.0.1:7002 down_for=`,
		`msg="raft: failed to heartbeat to" peer=127.0.0.1:7002`,
		`msg="peer answers again" peer=127.0.0.1:7003 down_for=`, // now this node's leader
	}
	if len(got) != len(want) {
		t.Fatalf("logged %d lines, want %d:\n%s", len(got), len(want), buf.String())
	}
	for i := range want {
		if !strings.HasPrefix(got[i], want[i]) {
			t.Errorf("line %d: %s\nwant it to start %s", i, got[i], want[i])
		}
	}
	if !strings.Contains(got[2], "failures_not_logged=19") {
		t.Errorf("recovery line %q does not count the 19 failures not logged", got[2])
	}
}

// TestPeerOutageForgottenWhenQuiet: a peer raft stopped naming (this node stopped
// leading) without a recovery message is reported again at its next failure.
func TestPeerOutageForgottenWhenQuiet(t *testing.T) {
	p := newPeerStates(time.Minute)
	args := []any{"peer", raft.ServerAddress("a:1")}
	t0 := time.Unix(1000, 0)
	for i, s := range []struct {
		at          time.Duration
		first, seen bool
	}{{0, true, true}, {30 * time.Second, false, true}, {80 * time.Second, false, true}, {150 * time.Second, true, true}} {
		if first, tracked := p.failed("peer", args, t0.Add(s.at)); first != s.first || tracked != s.seen {
			t.Errorf("step %d at %v: first=%v tracked=%v, want %v %v", i, s.at, first, tracked, s.first, s.seen)
		}
	}
	if first, tracked := p.failed("peer", []any{"error", "x"}, t0); first || tracked {
		t.Errorf("a report naming no peer was tracked")
	}
}

// TestUnknownGroupIsNotAnOutage: a peer that answers "unknown raft group" (a new group's
// last member not opened yet) is logged at Warn, and is not counted as down: the next
// real failure to reach it is still reported.
func TestUnknownGroupIsNotAnOutage(t *testing.T) {
	h, buf := warnLogger(t)
	n2 := raft.Server{ID: "n2", Address: "127.0.0.1:7002"}
	unknown := fmt.Errorf("%w %q at %s", transport.ErrUnknownGroup, "p/t/0", n2.Address)
	h.Error("failed to appendEntries to", "peer", n2, "error", unknown)
	h.Error("failed to heartbeat to", "peer", n2.Address, "error", errors.New("connection refused"))

	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("logged %d lines, want 2:\n%s", len(lines), buf.String())
	}
	if !strings.Contains(lines[0], "level=WARN") || !strings.Contains(lines[0], "does not run this group") || strings.Contains(lines[0], "peer not answering") {
		t.Errorf("unknown group logged as %s", lines[0])
	}
	if !strings.Contains(lines[1], "level=ERROR") || !strings.Contains(lines[1], "peer not answering") {
		t.Errorf("the failure after it logged as %s", lines[1])
	}
}

// warnLogger returns raft's logger writing at --log-level warn into buf, with peer
// outages tracked afresh for the test.
func warnLogger(t *testing.T) (hclog.Logger, *bytes.Buffer) {
	saved := peers
	peers = newPeerStates(time.Minute)
	t.Cleanup(func() { peers = saved })
	buf := &bytes.Buffer{}
	return newHCLog(slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelWarn}))).Named("raft"), buf
}
