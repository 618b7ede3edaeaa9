package election_test

import (
	"slices"
	"testing"

	"github.com/quorumq/quorumq/election/electiontest"
)

// TestCampaign: a follower that campaigns takes the leadership even from a live leader
// (the other follower grants its vote although it still follows that leader), keeping
// every committed entry; a leader asked to campaign stays leader.
func TestCampaign(t *testing.T) {
	c := electiontest.NewCluster(t, 3, "g", electiontest.NewRecorder)
	old := c.Leader(t)
	apply(t, old, "before")
	if err := old.Campaign(ctxWait(t)); err != nil {
		t.Fatalf("Campaign on the leader: %v", err)
	}
	if !old.IsLeader() {
		t.Fatal("the leader lost its leadership by campaigning")
	}

	fi, f := follower(c, old)
	// The entry may have been committed without f: f's vote requests would then be
	// refused (its log older) and someone else would win.
	eventually(t, f.ID()+" holding the entry", func() bool { return len(recorder(c, fi).Entries()) == 1 })
	if err := f.Campaign(ctxWait(t)); err != nil {
		t.Fatalf("Campaign on follower %s: %v", f.ID(), err)
	}
	eventually(t, f.ID()+" leading", func() bool { return c.Leader(t) == f })
	apply(t, f, "after")
	if err := f.ReadBarrier(ctxWait(t)); err != nil {
		t.Fatal(err)
	}
	if got := recorder(c, fi).Entries(); !slices.Equal(got, []string{"before", "after"}) {
		t.Fatalf("entries on the new leader: %v", got)
	}
}
