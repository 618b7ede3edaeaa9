package clientlib

import (
	"bytes"
	"testing"

	"github.com/quorumq/quorumq/broker"
	"github.com/quorumq/quorumq/manager"
	"github.com/quorumq/quorumq/manager/meta"
)

// The SDK's copies of the brokers' produce API (direct.go) against the broker's own.

func TestDirectMatchesBrokerAPI(t *testing.T) {
	if mimeBatch != broker.MIMEBatch {
		t.Fatalf("content type %q, the broker's is %q", mimeBatch, broker.MIMEBatch)
	}
	recs := []Record{{Value: "a"}, {Value: ""}, {Value: string(make([]byte, 300))}}
	if got, want := appendBatch(nil, recs), broker.AppendBatch(nil, valuesOf(recs)...); !bytes.Equal(got, want) {
		t.Fatalf("batch body %x, the broker's %x", got, want)
	}
	var r brokerProduceReply
	roundTrip(t, broker.ProduceReply{Offset: 7, Count: 3, Duplicate: true}, &r)
	if r.Offset != 7 || r.Count != 3 || !r.Duplicate {
		t.Fatalf("produce reply: %+v", r)
	}
	var f brokerFailure
	roundTrip(t, broker.Failure{Status: "failure", Message: "not the leader",
		Leader: &broker.Peer{ID: "b2", RaftAddr: "r:1", HTTPAddr: "h:2"}}, &f)
	if f.Message != "not the leader" || f.Leader == nil || f.Leader.ID != "b2" || f.Leader.HTTPAddr != "h:2" {
		t.Fatalf("failure: %+v", f)
	}
	var bs brokersReply
	roundTrip(t, manager.BrokersReply{Brokers: []meta.BrokerInfo{
		{Broker: meta.Broker{ID: "b1", Addr: "h:1", State: meta.BrokerDead}},
		{Broker: meta.Broker{ID: "b2", Addr: "h:2", State: meta.BrokerReleased}},
		{Broker: meta.Broker{ID: "b3", Addr: "h:3", State: meta.BrokerAlive}}}}, &bs)
	want := []brokerInfo{{"b1", "h:1", "dead"}, {"b2", "h:2", "released"}, {"b3", "h:3", "alive"}}
	if len(bs.Brokers) != 3 || bs.Brokers[0] != want[0] || bs.Brokers[1] != want[1] || bs.Brokers[2] != want[2] {
		t.Fatalf("brokers: %+v, want %+v", bs.Brokers, want)
	}
}
