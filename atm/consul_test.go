package atm_test

import (
	"strings"
	"testing"

	"github.com/quorumq/quorumq/discovery"
	"github.com/quorumq/quorumq/internal/devtools/consultest"
)

// TestATMsFindEachOtherInConsul: three ATMs with only a Consul address form the group
// (bootstrap-expect), survive a leader SIGKILL, and a fourth ATM started later joins
// and sees the same books.
func TestATMsFindEachOtherInConsul(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Consul and real processes")
	}
	agent := consultest.Start(t)
	withConsul := func(procs []*atmProc) []*atmProc {
		for _, a := range procs {
			a.args = append(append(a.args, consultest.Flags(t, agent, discovery.ServiceATM)...), "--bootstrap-expect", "3")
		}
		return procs
	}
	atms := startAll(t, withConsul(newATMs(t, 3, 1)))

	atms[0].expect(t, "deposit alice 30", "alice 30.00")
	atms[1].expect(t, "deposit bob 1.5", "bob 1.50")
	atms[2].expect(t, "transfer alice bob 0.5", "alice 29.50 bob 2.00")

	leader := leaderOf(t, atms)
	leader.p.Kill()
	waitNewLeader(t, atms, leader)
	var live []*atmProc
	for _, a := range atms {
		if a != leader {
			live = append(live, a)
		}
	}
	live[0].expect(t, "withdraw alice 9.5", "alice 20.00")

	late := withConsul(newATMs(t, 1, 4))[0]
	startAll(t, []*atmProc{late})
	late.expect(t, "balance alice", "alice 20.00")
	late.expect(t, "balance bob", "bob 2.00")
	if st := late.say(t, "status"); !strings.Contains(st, "members=atm1,atm2,atm3,atm4") {
		t.Fatalf("late ATM status %q, want all four members", st)
	}

	leader.start(t)
	leader.waitReady(t)
	leader.expect(t, "balance alice", "alice 20.00")
	late.expect(t, "deposit dora 1", "dora 1.00")
	leader.expect(t, "balance dora", "dora 1.00")
}
