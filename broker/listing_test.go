package broker_test

import (
	"context"
	"testing"
	"time"

	"github.com/quorumq/quorumq/broker"
	"github.com/quorumq/quorumq/broker/brokerapi"
	"github.com/quorumq/quorumq/internal/brokerclient"
)

// A new partition (New: its members bootstrap without asking each other) elects a
// leader; the brief listing (and a replica's brief status) names it on every replica
// and gives the members only on the leader's entry, while the full listing has the
// log's figures too.
func TestNewPartitionAndBriefListing(t *testing.T) {
	b1, p1 := runBroker(t, broker.Config{ID: "b1"})
	b2, p2 := runBroker(t, broker.Config{ID: "b2"})
	cl := brokerclient.New(b1.HTTPAddr(), b2.HTTPAddr())
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	part := 0
	for _, p := range []brokerapi.Peer{p1, p2} {
		req := brokerapi.CreateReplicaRequest{Topic: "t", Partition: &part, Peers: []brokerapi.Peer{p1, p2}, Leader: "b2", New: true}
		if err := cl.Do(ctx, "POST", p.HTTPAddr, "/replicas", req, nil); err != nil {
			t.Fatal(err)
		}
	}
	leader := waitLeader(t, cl, "t", 0)
	for _, p := range []brokerapi.Peer{p1, p2} {
		var brief, full brokerapi.ListReplicasReply
		if err := cl.Do(ctx, "GET", p.HTTPAddr, "/replicas?brief=true", nil, &brief); err != nil {
			t.Fatal(err)
		}
		if err := cl.Do(ctx, "GET", p.HTTPAddr, "/replicas", nil, &full); err != nil {
			t.Fatal(err)
		}
		if len(brief.Replicas) != 1 || len(full.Replicas) != 1 {
			t.Fatalf("%s lists %d briefly, %d in full; want 1", p.ID, len(brief.Replicas), len(full.Replicas))
		}
		st, f := brief.Replicas[0], full.Replicas[0]
		leads := p.ID == leader
		if st.Topic != "t" || st.Partition != 0 || st.IsLeader != leads || st.Leader.ID != leader {
			t.Errorf("%s brief %+v, want topic t/0 led by %s", p.ID, st, leader)
		}
		if want := map[bool]int{true: 2, false: 0}[leads]; len(st.Members) != want {
			t.Errorf("%s brief lists %d members, want %d", p.ID, len(st.Members), want)
		}
		if st.LogLast != 0 || f.LogLast == 0 || len(f.Members) != 2 {
			t.Errorf("%s: brief log_last_index %d (want none), full %d members %d", p.ID, st.LogLast, f.LogLast, len(f.Members))
		}
		var one brokerapi.ReplicaStatus
		if err := cl.Do(ctx, "GET", p.HTTPAddr, "/replicas/t/0?brief=true", nil, &one); err != nil {
			t.Fatal(err)
		}
		if one.Leader.ID != leader || one.IsLeader != leads || one.LogLast != 0 {
			t.Errorf("%s: GET /replicas/t/0?brief=true = %+v", p.ID, one)
		}
	}
}
