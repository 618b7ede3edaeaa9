package election_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/quorumq/quorumq/election/electiontest"
)

// leaderAmong waits until one of the nodes idx leads and the others of idx follow it.
func leaderAmong(t *testing.T, c *electiontest.Cluster, idx []int) int {
	t.Helper()
	var leader int
	eventually(t, fmt.Sprintf("a leader among %v", idx), func() bool {
		leader = -1
		for _, i := range idx {
			if c.Nodes[i].IsLeader() {
				leader = i
			}
		}
		if leader < 0 {
			return false
		}
		for _, i := range idx {
			if c.Nodes[i].Leader().ID != c.Nodes[leader].ID() {
				return false
			}
		}
		return true
	})
	return leader
}

// refuses checks that node i cannot commit while cut off from a majority.
func refuses(t *testing.T, c *electiontest.Cluster, i int, cmd string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	if _, err := c.Nodes[i].Apply(ctx, []byte(cmd)); err == nil {
		t.Fatalf("node %d committed %q without a majority", i, cmd)
	}
}

// converges waits until every node applied cmd, and checks they agree on the order.
func converges(t *testing.T, c *electiontest.Cluster, cmd string) {
	t.Helper()
	eventually(t, "every node to apply "+cmd, func() bool {
		for i := range c.Nodes {
			if !recorder(c, i).Has(cmd) {
				return false
			}
		}
		return true
	})
	want := recorder(c, 0).Entries()
	for i := range c.Nodes {
		if got := recorder(c, i).Entries(); !slices.Equal(got[:min(len(got), len(want))], want[:min(len(got), len(want))]) {
			t.Fatalf("node %d applied %v, node 0 %v", i, got, want)
		}
	}
}

func others(n, except int) []int {
	var idx []int
	for i := range n {
		if i != except {
			idx = append(idx, i)
		}
	}
	return idx
}

// TestPartitions runs a five-node group through the classic network partitions: only
// a side with a majority elects and commits, a minority (or an isolated leader) never
// commits, and once healed every node ends with the same log.
func TestPartitions(t *testing.T) {
	tests := []struct {
		name string
		// split returns the groups for the partition, the side that must commit, and
		// a node that must not, given the current leader.
		split func(leader int) (groups [][]int, majority []int, minority int)
	}{
		{"leader isolated", func(l int) ([][]int, []int, int) {
			return [][]int{others(5, l)}, others(5, l), l
		}},
		{"leader in the minority", func(l int) ([][]int, []int, int) {
			rest := others(5, l)
			minority := []int{l, rest[0]}
			return [][]int{minority, rest[1:]}, rest[1:], l
		}},
		{"leader in the majority", func(l int) ([][]int, []int, int) {
			rest := others(5, l)
			majority := append([]int{l}, rest[:2]...)
			return [][]int{majority, rest[2:]}, majority, rest[2]
		}},
		{"bridge", func(l int) ([][]int, []int, int) {
			// The leader alone sees both sides; each side has two followers.
			rest := others(5, l)
			left, right := append([]int{l}, rest[:2]...), append([]int{l}, rest[2:]...)
			return [][]int{left, right}, append(left, rest[2:]...), -1
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := electiontest.NewCluster(t, 5, "parts", electiontest.NewRecorder)
			leader := index(c, c.Leader(t))
			apply(t, c.Nodes[leader], "before")
			groups, majority, minority := tt.split(leader)
			c.Partition(groups...)
			if minority >= 0 {
				refuses(t, c, minority, "minority-"+tt.name)
			}
			l := leaderAmong(t, c, majority)
			apply(t, c.Nodes[l], "during")
			c.Heal()
			c.Leader(t)
			apply(t, c.Leader(t), "after")
			converges(t, c, "after")
			for i := range c.Nodes {
				if recorder(c, i).Has("minority-" + tt.name) {
					t.Fatalf("node %d applied the minority's command", i)
				}
			}
		})
	}
}

// TestOneWayCutFromLeader: followers that stop hearing the leader elect another one,
// although the old leader still hears them; after the heal the logs agree.
func TestOneWayCutFromLeader(t *testing.T) {
	c := electiontest.NewCluster(t, 3, "oneway", electiontest.NewRecorder)
	old := index(c, c.Leader(t))
	apply(t, c.Nodes[old], "before")
	for _, f := range others(3, old) {
		c.Cut(old, f)
	}
	l := leaderAmong(t, c, others(3, old))
	apply(t, c.Nodes[l], "during")
	c.Heal()
	apply(t, c.Leader(t), "after")
	converges(t, c, "after")
}

// TestSlowLinks: with every link delayed, the group still elects and commits.
func TestSlowLinks(t *testing.T) {
	c := electiontest.NewCluster(t, 3, "slow", electiontest.NewRecorder)
	for from := range 3 {
		for to := range 3 {
			if from != to {
				c.Delay(from, to, 30*time.Millisecond)
			}
		}
	}
	for i := range 5 {
		apply(t, c.Leader(t), fmt.Sprint("slow-", i))
	}
	old := index(c, c.Leader(t))
	c.Kill(old)
	leaderAmong(t, c, others(3, old))
	apply(t, c.Leader(t), "after failover")
	c.Heal()
	c.Restart(t, old)
	converges(t, c, "after failover")
}
