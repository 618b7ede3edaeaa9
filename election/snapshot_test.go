package election_test

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/quorumq/quorumq/election"
	"github.com/quorumq/quorumq/election/electiontest"
)

// TestSnapshotWithoutInterval: with SnapshotBytes set, every member snapshots once that
// many command bytes were applied, long before SnapshotInterval and SnapshotThreshold;
// with SnapshotGap set, once SnapshotThreshold entries were, long before
// SnapshotInterval.
func TestSnapshotWithoutInterval(t *testing.T) {
	tests := []struct {
		name   string
		timing func(*election.Timing)
		size   int // of each of the 10 commands
	}{
		{"bytes", func(t *election.Timing) { t.SnapshotThreshold, t.SnapshotBytes = 1<<30, 4<<10 }, 1 << 10},
		{"entries", func(t *election.Timing) { t.SnapshotThreshold, t.SnapshotGap = 8, 10*time.Millisecond }, 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			timing := election.DefaultTiming()
			timing.SnapshotInterval = time.Hour
			tt.timing(&timing)
			c := electiontest.NewClusterWith(t, 3, "g", electiontest.NewRecorder, electiontest.Options{Timing: timing})
			leader := c.Leader(t)
			body := strings.Repeat("x", tt.size)
			for i := range 10 {
				apply(t, leader, body+strconv.Itoa(i))
			}
			deadline := time.Now().Add(30 * time.Second)
			for i, n := range c.Nodes {
				for {
					idx, _ := strconv.ParseUint(n.Raft().Stats()["last_snapshot_index"], 10, 64)
					if idx > 0 {
						break
					}
					if time.Now().After(deadline) {
						t.Fatalf("node %d took no snapshot after 10 commands of %d bytes", i, tt.size)
					}
					time.Sleep(20 * time.Millisecond)
				}
			}
		})
	}
}
