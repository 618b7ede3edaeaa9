package broker_test

import (
	"context"
	"testing"

	"github.com/quorumq/quorumq/broker/brokerapi"
)

// TestPeersAreChecked: a replica is created, or a member added, only with
// peers a Raft group can run on.
func TestPeersAreChecked(t *testing.T) {
	b, cl := startBroker(t)
	self := `{"id":"b1","raft_addr":"` + b.RaftAddr() + `"}`
	tests := []struct{ name, path, body string }{
		{"address not host:port", "/replicas", `{"topic":"u","partition":0,"peers":[{"id":"b1","raft_addr":"not-an-addr"}]}`},
		{"no id", "/replicas", `{"topic":"u","partition":0,"peers":[{"raft_addr":"127.0.0.1:7201"}]}`},
		{"no address", "/replicas", `{"topic":"u","partition":0,"peers":[{"id":"b1"}]}`},
		{"no host", "/replicas", `{"topic":"u","partition":0,"peers":[{"id":"b1","raft_addr":":7201"}]}`},
		{"port 0", "/replicas", `{"topic":"u","partition":0,"peers":[{"id":"b1","raft_addr":"127.0.0.1:0"}]}`},
		{"port out of range", "/replicas", `{"topic":"u","partition":0,"peers":[{"id":"b1","raft_addr":"127.0.0.1:99999"}]}`},
		{"bad http_addr", "/replicas", `{"topic":"u","partition":0,"peers":[{"id":"b1","raft_addr":"127.0.0.1:7201","http_addr":"x"}]}`},
		{"same id twice", "/replicas", `{"topic":"u","partition":0,"peers":[` + self + `,{"id":"b1","raft_addr":"127.0.0.1:7202"}]}`},
		{"same address twice", "/replicas", `{"topic":"u","partition":0,"peers":[` + self + `,{"id":"b2","raft_addr":"` + b.RaftAddr() + `"}]}`},
		{"member address not host:port", "/replicas/t/0/members", `{"id":"b2","raft_addr":"not-an-addr"}`},
		{"member without id", "/replicas/t/0/members", `{"raft_addr":"127.0.0.1:7202"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			expectFailure(t, "POST", "http://"+b.HTTPAddr()+tt.path, "application/json", tt.body, 400)
		})
	}
	var list brokerapi.ListReplicasReply
	if err := cl.Do(context.Background(), "GET", b.HTTPAddr(), "/replicas", nil, &list); err != nil || len(list.Replicas) != 1 || len(list.Replicas[0].Members) != 1 {
		t.Fatalf("refused peers changed the replicas: %+v %v", list, err)
	}
}
