package broker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestPeerWatch drives peerWatch through steps, each a tick of the watcher at a time
// (what the peers list returns then, which pings it starts) followed by the answers
// to some pings (which peers are suspected after them, what is logged).
func TestPeerWatch(t *testing.T) {
	errNoAnswer := errors.New("no answer")
	type step struct {
		at        time.Duration
		list      []string         // what listing the peers returns at this step
		wantPings []string         // pings due at this tick
		answers   map[string]error // then these pings return
		stopping  bool             // the watcher's ctx ended before the answers
		suspects  []string         // suspected after the answers
		logs      []string         // lines logged by the answers
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"answering peers are never suspected", []step{
			{at: 0, list: []string{"a", "b"}, wantPings: []string{"a", "b"},
				answers: map[string]error{"a": nil, "b": nil}},
			{at: pingEvery, wantPings: []string{"a", "b"},
				answers: map[string]error{"a": nil, "b": nil}},
		}},
		{"a silent peer is suspected until it answers, logged once each way", []step{
			{at: 0, list: []string{"a", "b"}, wantPings: []string{"a", "b"},
				answers: map[string]error{"a": errNoAnswer, "b": nil}, suspects: []string{"a"},
				logs: []string{"broker not answering pings"}},
			{at: pingEvery, wantPings: []string{"a", "b"},
				answers: map[string]error{"a": errNoAnswer, "b": nil}, suspects: []string{"a"}},
			{at: 2 * pingEvery, wantPings: []string{"a", "b"},
				answers: map[string]error{"a": nil}, logs: []string{"broker answers pings again"}},
		}},
		{"pings go once per pingEvery", []step{
			{at: 0, list: []string{"a"}, wantPings: []string{"a"}, answers: map[string]error{"a": nil}},
			{at: nudgeEvery},
			{at: pingEvery - time.Millisecond},
			{at: pingEvery, wantPings: []string{"a"}},
		}},
		{"a ping still out is not sent again", []step{
			{at: 0, list: []string{"a", "b"}, wantPings: []string{"a", "b"}, answers: map[string]error{"b": nil}},
			{at: pingEvery, wantPings: []string{"b"}, answers: map[string]error{"a": nil, "b": nil}},
			{at: 2 * pingEvery, wantPings: []string{"a", "b"}},
		}},
		{"the peers are listed again every peersEvery", []step{
			{at: 0, list: []string{"a"}, wantPings: []string{"a"}, answers: map[string]error{"a": nil}},
			{at: pingEvery, list: []string{"a", "b"}, wantPings: []string{"a"}, answers: map[string]error{"a": nil}},
			{at: peersEvery, list: []string{"b"}, wantPings: []string{"b"}, answers: map[string]error{"b": errNoAnswer},
				suspects: []string{"b"}, logs: []string{"broker not answering pings"}},
		}},
		{"a ping failing as the watcher stops suspects nobody", []step{
			{at: 0, list: []string{"a"}, wantPings: []string{"a"},
				answers: map[string]error{"a": context.Canceled}, stopping: true},
		}},
		{"a suspect answering as the watcher stops is cleared", []step{
			{at: 0, list: []string{"a"}, wantPings: []string{"a"},
				answers: map[string]error{"a": errNoAnswer}, suspects: []string{"a"}, logs: []string{"broker not answering pings"}},
			{at: pingEvery, wantPings: []string{"a"},
				answers: map[string]error{"a": nil}, stopping: true, logs: []string{"broker answers pings again"}},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var logged bytes.Buffer
			var list []string
			w := newPeerWatch(slog.New(slog.NewTextHandler(&logged, nil)), func() []string { return list })
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			start := time.Unix(1_000_000, 0)
			for i, s := range tt.steps {
				if s.list != nil {
					list = s.list
				}
				if got := w.due(start.Add(s.at)); !slices.Equal(got, s.wantPings) {
					t.Fatalf("step %d: pings %v, want %v", i, got, s.wantPings)
				}
				if s.stopping {
					cancel()
				}
				logged.Reset()
				for _, addr := range slices.Sorted(maps.Keys(s.answers)) {
					w.pinged(ctx, addr, s.answers[addr])
				}
				if got := slices.Sorted(maps.Keys(w.suspects())); !slices.Equal(got, s.suspects) {
					t.Fatalf("step %d: suspects %v, want %v", i, got, s.suspects)
				}
				lines := strings.Split(strings.TrimSpace(logged.String()), "\n")
				if logged.Len() == 0 {
					lines = nil
				}
				if len(lines) != len(s.logs) {
					t.Fatalf("step %d: logged %q, want lines containing %q", i, lines, s.logs)
				}
				for j, want := range s.logs {
					if !strings.Contains(lines[j], want) {
						t.Fatalf("step %d: logged %q, want %q", i, lines[j], want)
					}
				}
			}
		})
	}
}

// TestPeerWatchSuspectsIsACopy: the watcher works on the suspects while pings return.
func TestPeerWatchSuspectsIsACopy(t *testing.T) {
	w := newPeerWatch(slog.New(slog.DiscardHandler), func() []string { return []string{"a"} })
	w.due(time.Unix(1_000_000, 0))
	w.pinged(context.Background(), "a", errors.New("no answer"))
	s := w.suspects()
	w.pinged(context.Background(), "a", nil)
	if _, ok := s["a"]; !ok || len(w.suspects()) != 0 {
		t.Fatalf("suspects %v then %v", s, w.suspects())
	}
}

// TestPeerWatchGone: a refused ping marks the peer gone (nothing listens at its
// address), a ping without answer only suspected; the suspicion keeps the time it began.
func TestPeerWatchGone(t *testing.T) {
	refused := fmt.Errorf("transport: dial a: %w", &net.OpError{Op: "dial", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)})
	tests := []struct {
		name     string
		answers  []error
		wantGone bool
	}{
		{"refused", []error{refused}, true},
		{"no answer", []error{errors.New("no answer")}, false},
		{"refused after no answer", []error{errors.New("no answer"), refused}, true},
		{"no answer after refused", []error{refused, errors.New("no answer")}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newPeerWatch(slog.New(slog.DiscardHandler), func() []string { return []string{"a"} })
			var since time.Time
			for i, err := range tt.answers {
				w.due(time.Unix(1_000_000, 0).Add(time.Duration(i) * pingEvery))
				w.pinged(context.Background(), "a", err)
				s := w.suspects()["a"]
				if i == 0 {
					since = s.since
				}
				if s.since.IsZero() || !s.since.Equal(since) {
					t.Fatalf("answer %d: suspected since %v, want the first failure's %v", i, s.since, since)
				}
			}
			if got := w.suspects()["a"].gone; got != tt.wantGone {
				t.Errorf("gone %v, want %v", got, tt.wantGone)
			}
		})
	}
}
