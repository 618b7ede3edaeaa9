package broker_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/quorumq/quorumq/broker"
	"github.com/quorumq/quorumq/broker/brokerapi"
	"github.com/quorumq/quorumq/internal/brokerclient"
)

func readAt(t *testing.T, cl *brokerclient.Client, addr, query string) (brokerapi.ReadAtReply, error) {
	t.Helper()
	var r brokerapi.ReadAtReply
	err := cl.Do(context.Background(), "GET", addr, "/replicas/t/0/messages?"+query, nil, &r)
	return r, err
}

func TestReadAtSingleBroker(t *testing.T) {
	b, cl := startBroker(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := cl.Produce(ctx, "t", 0, "p", 1, []string{"a", "b", "c", "d"}); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.Register(ctx, "t", 0, "c"); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		query       string
		want        []string
		offset, end uint64
	}{
		{"", []string{"a"}, 0, 1},
		{"offset=1&max=2", []string{"b", "c"}, 1, 3},
		{"offset=2&max=1000", []string{"c", "d"}, 2, 4},
		{"offset=4&max=10", []string{}, 4, 4},
		{"offset=99", []string{}, 99, 99},
	}
	for _, tt := range tests {
		r, err := readAt(t, cl, b.HTTPAddr(), tt.query)
		if err != nil || !slices.Equal(r.Messages, tt.want) || r.Offset != tt.offset || r.Next != tt.end || r.End != 4 {
			t.Fatalf("?%s: %+v %v; want %v from %d to %d", tt.query, r, err, tt.want, tt.offset, tt.end)
		}
	}
	// Bodies that are not UTF-8 come back byte for byte in base64.
	odd := []string{"\xff\xfe", "ok", "\xc3"}
	if _, err := cl.Produce(ctx, "t", 0, "p", 2, odd); err != nil {
		t.Fatal(err)
	}
	var raw brokerapi.ReadAtRawReply
	if err := cl.Do(ctx, "GET", b.HTTPAddr(), "/replicas/t/0/messages?offset=3&max=4&encoding=base64", nil, &raw); err != nil ||
		len(raw.Messages) != 4 || string(raw.Messages[0]) != "d" || string(raw.Messages[1]) != odd[0] || string(raw.Messages[3]) != odd[2] || raw.Next != 7 {
		t.Fatalf("base64 read: %q %+v %v", raw.Messages, raw, err)
	}
	// Reading moved no consumer.
	var size brokerapi.SizeReply
	if err := cl.Do(ctx, "GET", b.HTTPAddr(), "/size?topic=t&partition=0&consumer_id=c", nil, &size); err != nil || size.Size != 7 {
		t.Fatalf("size after reads: %+v %v", size, err)
	}

	for _, tt := range []struct {
		path string
		code int
	}{
		{"/replicas/t/0/messages?offset=x", 400},
		{"/replicas/t/0/messages?offset=-1", 400},
		{"/replicas/t/0/messages?max=-1", 400},
		{"/replicas/t/0/messages?max=0", 400},
		{"/replicas/t/0/messages?max=1001", 400},
		{"/replicas/t/0/messages?max=two", 400},
		{"/replicas/t/0/messages?encoding=hex", 400},
		{"/replicas/t/x/messages", 400},
		{"/replicas/t/7/messages", 404},
		{"/replicas/nope/0/messages", 404},
	} {
		code, reply := rawRequest(t, "GET", b.HTTPAddr(), tt.path, "")
		if code != tt.code || !isFailure(reply) {
			t.Fatalf("GET %s: %d %s, want %d and a JSON failure", tt.path, code, reply, tt.code)
		}
	}
}

// TestReadAtFollowers: every replica, followers included, answers a read by offset
// with the messages the leader acknowledged, byte for byte.
func TestReadAtFollowers(t *testing.T) {
	var peers []brokerapi.Peer
	for i := range 3 {
		_, p := runBroker(t, broker.Config{ID: fmt.Sprintf("b%d", i+1)})
		peers = append(peers, p)
	}
	cl := brokerclient.New(peers[0].HTTPAddr, peers[1].HTTPAddr, peers[2].HTTPAddr)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := cl.CreatePartition(ctx, "t", 0, peers); err != nil {
		t.Fatal(err)
	}
	waitLeader(t, cl, "t", 0)
	var want []string
	for i := range 5 {
		batch := []string{fmt.Sprintf("m%d-a", i), fmt.Sprintf("m%d-b\x00\n\"", i)}
		if _, err := cl.Produce(ctx, "t", 0, "p", uint64(i+1), batch); err != nil {
			t.Fatal(err)
		}
		want = append(want, batch...)
	}
	for _, p := range peers {
		waitFor(t, "all messages on "+p.ID, func() bool {
			r, err := readAt(t, cl, p.HTTPAddr, "offset=0&max=1000")
			if err != nil {
				t.Fatalf("%s: %v", p.ID, err)
			}
			// A follower may be behind, never different.
			if len(r.Messages) > len(want) || !slices.Equal(r.Messages, want[:len(r.Messages)]) {
				t.Fatalf("%s returned %q, want a prefix of %q", p.ID, r.Messages, want)
			}
			return len(r.Messages) == len(want)
		})
	}
}
