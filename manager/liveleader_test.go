package manager

import (
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/quorumq/quorumq/discovery"
	"github.com/quorumq/quorumq/internal/devtools/pgserver"
	"github.com/quorumq/quorumq/internal/devtools/testkit"
	"github.com/quorumq/quorumq/manager/managerapi"
	"github.com/quorumq/quorumq/manager/meta"
)

// TestDescribeLiveLeader: right after a partition's leader broker dies, the recorded
// leader is still the dead one; ?live=true names the replica that says it leads, or
// none while the replicas still name the dead one.
func TestDescribeLiveLeader(t *testing.T) {
	pg := pgserver.StartT(t)
	d := discovery.NewStatic()
	fb := newFakeBrokers()
	servers := map[string]*http.Server{}
	for _, id := range []string{"b1", "b2", "b3"} {
		servers[id] = fb.start(t, d, id)
	}
	m := startManager(t, d, pg.DSN("live"))
	eventually(t, 10*time.Second, "brokers alive", func() bool { return len(brokerStates(t, m)) == 3 })
	var tr managerapi.TopicReply
	if code := call(t, m, "POST", "/topics", `{"name":"t"}`, &tr); code != 201 {
		t.Fatalf("create: %d %+v", code, tr)
	}
	g, dead := meta.GroupName("t", 0), tr.Topic.Partitions[0].Leader
	next := tr.Topic.Partitions[0].Replicas[slices.IndexFunc(tr.Topic.Partitions[0].Replicas, func(id string) bool { return id != dead })]
	servers[dead].Close()

	for _, tc := range []struct {
		name, named, want string
	}{
		{"new leader elected", next, next},
		{"followers still name the dead leader", dead, ""},
		{"election under way", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fb.setLeader(g, tc.named)
			var live managerapi.TopicReply
			if code := call(t, m, "GET", "/topics/t?live=true", "", &live); code != 200 || live.Topic.Partitions[0].Leader != tc.want {
				t.Fatalf("live describe: %d, leader %q; want %q (recorded %q, dead)", code, live.Topic.Partitions[0].Leader, tc.want, dead)
			}
		})
	}
}

// TestRepliesEndWithNewline: replies printed one after another (curl in a shell) stay
// apart.
func TestRepliesEndWithNewline(t *testing.T) {
	m, _, _ := startWithBrokers(t, "newline", "b1")
	testkit.RepliesEndWithNewline(t, "http://"+m.HTTPAddr(), []testkit.Request{
		{"POST", "/topics", `{"name":"t"}`},
		{"GET", "/topics", ""},
		{"GET", "/topics/nope", ""},
		{"POST", "/topics", `{`},
		{"GET", "/nope", ""},
	})
}
