package manager

import (
	"testing"
	"time"

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
