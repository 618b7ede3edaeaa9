package election_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/quorumq/quorumq/election"
	"github.com/quorumq/quorumq/election/electiontest"
)

// A leader that finds damage while running hands leadership over, sits out until it has
// caught up, and then votes and serves again; the group keeps working throughout.
func TestReportDamageOnLeader(t *testing.T) {
	c := electiontest.NewCluster(t, 3, "g", electiontest.NewRecorder)
	old := c.Leader(t)
	apply(t, old, "a")
	old.ReportDamage(election.FaultRaftLogChecksum, errors.New("test damage"))
	if rec, why := old.Recovering(); !rec || !strings.Contains(why, "test damage") {
		t.Fatalf("Recovering() = %v, %q right after ReportDamage", rec, why)
	}
	eventually(t, "the damaged leader to step down and catch up", func() bool {
		rec, _ := old.Recovering()
		return !rec
	})
	leader := c.Leader(t)
	if leader == old {
		t.Fatal("the damaged leader kept the leadership")
	}
	apply(t, old, "b")
	if err := old.ReadBarrier(ctxWait(t)); err != nil {
		t.Fatal(err)
	}
}
