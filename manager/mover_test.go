package manager

import (
	"slices"
	"testing"
	"time"

	"github.com/quorumq/quorumq/manager/managerapi"
	"github.com/quorumq/quorumq/manager/meta"
)

// A decommission whose moves keep failing (the new replicas never open) counts the
// failed attempts, retries them with backoff, and can be cancelled: the broker is
// alive again with every replica it held, and no move is left under way.
func TestDecommissionCancelled(t *testing.T) {
	m, fb, _ := startWithBrokers(t, "cancel", "b1", "b2", "b3", "b4")
	if code := call(t, m, "POST", "/topics", `{"name":"t","partitions":8}`, nil); code != 201 {
		t.Fatalf("create: %d", code)
	}
	held := brokerStates(t, m)["b4"].Replicas
	for i := range 8 {
		fb.setOpening(meta.GroupName("t", i), true)
	}
	if code := call(t, m, "DELETE", "/brokers/b4", "", nil); code != 202 {
		t.Fatalf("decommission: %d", code)
	}
	eventually(t, 15*time.Second, "failed moves counted", func() bool {
		b := brokerStates(t, m)["b4"]
		return b.State == string(meta.BrokerDecommissioning) && b.Moves.Failed >= held && b.Replicas == held
	})
	if code := call(t, m, "POST", "/brokers/b4/cancel-decommission", "", nil); code != 200 {
		t.Fatalf("cancel: %d", code)
	}
	for i := range 8 {
		fb.setOpening(meta.GroupName("t", i), false)
	}
	eventually(t, 15*time.Second, "b4 alive with its replicas, nothing moving", func() bool {
		b := brokerStates(t, m)["b4"]
		return b.State == string(meta.BrokerAlive) && b.Replicas == held && b.Moves.InFlight == 0 && b.Moves.Pending == 0
	})
	var f struct{ Message string }
	if code := call(t, m, "POST", "/brokers/b4/cancel-decommission", "", &f); code != 409 {
		t.Fatalf("cancelling again: %d %+v, want 409", code, f)
	}
}

// A move hands the leadership to the new replica only once that replica holds the
// leader's whole Raft log. A replica that has received nothing reports applied index 0,
// as the leader of a partition without messages does; told to hand over to it then,
// the leader deposed itself (election.Node.canStand).
func TestMoveWaitsForTheNewReplicasLog(t *testing.T) {
	m, fb, _ := startWithBrokers(t, "catchup", "b1", "b2", "b3", "b4")
	var tr managerapi.TopicReply
	if code := call(t, m, "POST", "/topics", `{"name":"t","partitions":1}`, &tr); code != 201 {
		t.Fatalf("create: %d", code)
	}
	p, g := tr.Topic.Partitions[0], meta.GroupName("t", 0)
	from := p.Replicas[0]
	to := slices.DeleteFunc([]string{"b1", "b2", "b3", "b4"}, func(b string) bool { return slices.Contains(p.Replicas, b) })[0]
	fb.setLeader(g, from)
	fb.setLagging(to, true)
	if code := call(t, m, "DELETE", "/brokers/"+from, "", nil); code != 202 {
		t.Fatalf("decommission %s: %d", from, code)
	}
	eventually(t, 15*time.Second, "the new replica open on "+to, func() bool { return fb.holds(to, g) })
	time.Sleep(5 * catchUpPoll) // the move polls the new replica meanwhile
	fb.mu.Lock()
	leader := fb.leaders[g]
	fb.mu.Unlock()
	if leader != from {
		t.Fatalf("leadership handed to %s while its log was empty", leader)
	}
	fb.setLagging(to, false)
	eventually(t, 15*time.Second, from+" released, "+to+" leading", func() bool {
		fb.mu.Lock()
		leader := fb.leaders[g]
		fb.mu.Unlock()
		return brokerStates(t, m)[from].State == string(meta.BrokerReleased) && leader == to
	})
}
