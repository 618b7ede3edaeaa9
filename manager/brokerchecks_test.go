package manager

import (
	"testing"
	"time"

	"github.com/quorumq/quorumq/discovery"
	"github.com/quorumq/quorumq/manager/managerapi"
	"github.com/quorumq/quorumq/manager/meta"
)

// TestReplicationAndDecommissionChecks: a replication factor the alive
// brokers cannot meet is refused on create and on growth; a decommission can
// be cancelled, and only a decommission.
func TestReplicationAndDecommissionChecks(t *testing.T) {
	m, _, d := startWithBrokers(t, "checks", "b1", "b2", "b3")
	if code := call(t, m, "POST", "/topics", `{"name":"t","replication":3}`, nil); code != 201 {
		t.Fatalf("create with replication 3 on 3 brokers: %d", code)
	}
	// b3 cannot be emptied (every other broker holds t/0 already), so its
	// decommission stays under way until it is cancelled.
	if code := call(t, m, "DELETE", "/brokers/b3", "", nil); code != 202 {
		t.Fatalf("decommission: %d", code)
	}
	failures := []struct {
		name, method, path, body string
		status                   int
		code                     string
	}{
		{"replication over alive brokers", "POST", "/topics", `{"name":"x","replication":3}`, 400, managerapi.CodeInvalid},
		{"replication 1000", "POST", "/topics", `{"name":"x","replication":1000}`, 400, managerapi.CodeInvalid},
		{"grow while too few are alive", "POST", "/topics/t/partitions", `{"count":1}`, 400, managerapi.CodeInvalid},
		{"cancel an alive broker", "POST", "/brokers/b1/cancel-decommission", ``, 409, managerapi.CodeConflict},
		{"cancel an unknown broker", "POST", "/brokers/b9/cancel-decommission", ``, 404, managerapi.CodeUnknownBroker},
	}
	for _, c := range failures {
		t.Run(c.name, func(t *testing.T) {
			var f managerapi.Failure
			if status := call(t, m, c.method, c.path, c.body, &f); status != c.status || f.Code != c.code || f.Message == "" {
				t.Fatalf("%s %s: %d %+v, want %d %s", c.method, c.path, status, f, c.status, c.code)
			}
		})
	}
	if code := call(t, m, "POST", "/topics", `{"name":"x","replication":2}`, nil); code != 201 {
		t.Fatalf("create with replication 2 on 2 alive brokers: %d", code)
	}

	if code := call(t, m, "POST", "/brokers/b3/cancel-decommission", "", nil); code != 200 {
		t.Fatalf("cancel decommission: %d", code)
	}
	if b := brokerStates(t, m)["b3"]; b.State != string(meta.BrokerAlive) || b.Replicas == 0 {
		t.Fatalf("after cancel: %+v, want alive with its replicas", b)
	}
	if code := call(t, m, "POST", "/topics/t/partitions", `{"count":1}`, nil); code != 200 {
		t.Fatalf("grow with 3 alive brokers: %d", code)
	}

	d.SetHealth(discovery.ServiceBroker, "b3", discovery.Critical)
	eventually(t, 15*time.Second, "b3 dead", func() bool { return brokerStates(t, m)["b3"].State == string(meta.BrokerDead) })
	var f managerapi.Failure
	if status := call(t, m, "POST", "/brokers/b3/cancel-decommission", "", &f); status != 409 {
		t.Fatalf("cancel on a dead broker: %d %+v, want 409", status, f)
	}
}
