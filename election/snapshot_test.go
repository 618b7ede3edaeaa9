package election_test

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/quorumq/quorumq/election"
	"github.com/quorumq/quorumq/election/electiontest"
)

// TestSnapshotBytes: with SnapshotBytes set, every member snapshots once that many
// command bytes were applied, long before SnapshotInterval and SnapshotThreshold.
func TestSnapshotBytes(t *testing.T) {
	timing := election.DefaultTiming()
	timing.SnapshotInterval = time.Hour
	timing.SnapshotThreshold = 1 << 30
	timing.SnapshotBytes = 4 << 10
	c := electiontest.NewClusterWith(t, 3, "g", electiontest.NewRecorder, electiontest.Options{Timing: timing})
	leader := c.Leader(t)
	big := strings.Repeat("x", 1<<10)
	for i := range 10 {
		apply(t, leader, big+strconv.Itoa(i))
	}
	deadline := time.Now().Add(30 * time.Second)
	for i, n := range c.Nodes {
		for {
			idx, _ := strconv.ParseUint(n.Raft().Stats()["last_snapshot_index"], 10, 64)
			if idx > 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("node %d took no snapshot after 10 KiB of commands", i)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}
