package atm_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/quorumq/quorumq/election/electiontest"
)

// TestRaftLogBitFlip: the ATMs keep their Raft log in raft-boltdb, whose pages carry no
// checksum, so every entry is sealed (election/checked.go). A bit flipped in an entry of
// a stopped follower's raft.db is found when it starts (logged), the entry is never
// applied, and the follower takes no part in elections until it has caught up from the
// leader: once the leader is killed, every ATM still gives the right balances.
func TestRaftLogBitFlip(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	const marked = "flipmarker0123456789"
	atms := startATMs(t, 3)
	leader := leaderOf(t, atms)
	leader.expect(t, "deposit "+marked+" 100", marked+" 100.00")
	for i := range 10 {
		leader.expect(t, fmt.Sprintf("deposit acct%d %d", i, i+1), fmt.Sprintf("acct%d %d.00", i, i+1))
	}
	f := without(atms, leader)[0]
	time.Sleep(time.Second) // the follower holds every entry (one may lag by a heartbeat)
	f.p.Kill()
	electiontest.FlipBits(t, f.args[slices.Index(f.args, "--data-dir")+1], []byte(marked))
	f.start(t)
	f.waitReady(t)
	f.p.WaitOutput(t, "storage fault", 30*time.Second)
	leader.expect(t, "deposit "+marked+" 1", marked+" 101.00")
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		st, err := f.client().Status(ctx)
		cancel()
		if err == nil && st.Recovering == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s still recovering: %+v %v", f.id, st, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	leader.p.Kill()
	live := without(atms, leader)
	waitNewLeader(t, atms, leader)
	for _, a := range live {
		a.expect(t, "balance "+marked, marked+" 101.00")
		for i := range 10 {
			a.expect(t, fmt.Sprintf("balance acct%d", i), fmt.Sprintf("acct%d %d.00", i, i+1))
		}
	}
}
