package election

import (
	"testing"
	"time"
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
