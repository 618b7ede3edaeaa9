package manager

import (
	"slices"
	"testing"

	"github.com/quorumq/quorumq/manager/managerapi"
)

// TestReadAtRoundRobin: reads by offset go round robin over the partition's replicas,
// pass over one that fails, and refuse bad input.
func TestReadAtRoundRobin(t *testing.T) {
	m, fb, _ := startWithBrokers(t, "readat", "b1", "b2", "b3")
	var tr managerapi.TopicReply
	if code := call(t, m, "POST", "/topics", `{"name":"orders","partitions":2}`, &tr); code != 201 {
		t.Fatalf("create topic: %d %+v", code, tr)
	}
	var pr managerapi.ProducerReply
	call(t, m, "POST", "/producer/register", `{"topic":"orders"}`, &pr)
	body := `{"topic":"orders","partition":1,"producer_id":` + itoa(pr.ProducerID) + `,"messages":["m0","m1","m2","m3","m4"]}`
	if code := call(t, m, "POST", "/producer/produce", body, nil); code != 200 {
		t.Fatalf("produce: %d", code)
	}
	const path = "/topics/orders/partitions/1/messages"
	want := []string{"m0", "m1", "m2", "m3", "m4"}
	read := func() managerapi.MessagesReply {
		t.Helper()
		var r managerapi.MessagesReply
		if code := call(t, m, "GET", path+"?offset=0&max=100", "", &r); code != 200 || !slices.Equal(r.Messages, want) ||
			r.Partition != 1 || r.Offset != 0 || r.NextOffset != 5 {
			t.Fatalf("read: %d %+v", code, r)
		}
		return r
	}
	fb.readCounts()
	for range 6 {
		read()
	}
	if got := fb.readCounts(); got["b1"] != 2 || got["b2"] != 2 || got["b3"] != 2 {
		t.Fatalf("6 reads spread as %v, want 2 on each replica", got)
	}

	fb.setFailing("b2", true)
	for range 6 {
		if r := read(); r.Broker == "b2" {
			t.Fatalf("answered by the failing b2: %+v", r)
		}
	}
	if got := fb.readCounts(); got["b2"] != 0 || got["b1"] == 0 || got["b3"] == 0 || got["b1"]+got["b3"] != 6 {
		t.Fatalf("reads with b2 failing went %v, want all 6 on b1 and b3, both used", got)
	}
	fb.setFailing("b2", false)

	tests := []struct {
		path string
		code int
		want []string
		next uint64
	}{
		{path, 200, []string{"m0"}, 1},
		{path + "?offset=3&max=1", 200, []string{"m3"}, 4},
		{path + "?offset=4&max=1000", 200, []string{"m4"}, 5},
		{path + "?offset=5", 200, []string{}, 5},
		{path + "?offset=50&max=3", 200, []string{}, 50},
		{"/topics/orders/partitions/0/messages", 200, []string{}, 0},
		{"/topics/nope/partitions/0/messages", 404, nil, 0},
		{"/topics/orders/partitions/2/messages", 404, nil, 0},
		{"/topics/orders/partitions/x/messages", 400, nil, 0},
		{"/topics/orders/partitions/-1/messages", 400, nil, 0},
		{path + "?offset=-1", 400, nil, 0},
		{path + "?offset=one", 400, nil, 0},
		{path + "?max=0", 400, nil, 0},
		{path + "?max=1001", 400, nil, 0},
		{path + "?max=-2", 400, nil, 0},
	}
	for _, tt := range tests {
		var r struct {
			managerapi.MessagesReply
			Message string `json:"message"`
		}
		code := call(t, m, "GET", tt.path, "", &r)
		if code != tt.code {
			t.Fatalf("GET %s: %d %+v, want %d", tt.path, code, r, tt.code)
		}
		if code != 200 {
			if r.Status != "failure" || r.Message == "" {
				t.Fatalf("GET %s: %+v, want a JSON failure", tt.path, r)
			}
			continue
		}
		if r.Status != "success" || r.Messages == nil || !slices.Equal(r.Messages, tt.want) || r.NextOffset != tt.next {
			t.Fatalf("GET %s: %+v, want %v up to %d", tt.path, r, tt.want, tt.next)
		}
	}
}
