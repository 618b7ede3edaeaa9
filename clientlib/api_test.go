package clientlib

import (
	"encoding/json"
	"errors"
	"os/exec"
	"strings"
	"testing"

	"github.com/quorumq/quorumq/manager/managerapi"
)

// The SDK's lenient decoders (api.go) read the managers' replies (managerapi), and what
// it sends is what the managers read.

func roundTrip(t *testing.T, from, to any) {
	t.Helper()
	b, err := json.Marshal(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, to); err != nil {
		t.Fatalf("decoding %s into %T: %v", b, to, err)
	}
}

func TestRequestsMatchManagerAPI(t *testing.T) {
	two := 2
	var reg registerReply
	roundTrip(t, managerapi.ProducerReply{ProducerID: 42}, &reg)
	seq, msg := uint64(7), "hello"
	var pr managerapi.ProduceRequest
	roundTrip(t, produceRequest{Topic: "t", ProducerID: reg.ProducerID, Partition: &two, Seq: &seq, Message: &msg}, &pr)
	if pr.ProducerID != 42 || pr.Seq == nil || *pr.Seq != 7 || pr.Partition == nil || *pr.Partition != 2 || *pr.Message != "hello" {
		t.Fatalf("produce: %+v", pr)
	}
	roundTrip(t, produceRequest{Topic: "t", ProducerID: reg.ProducerID, Messages: []string{"a", "b"}}, &pr)
	if len(pr.Messages) != 2 {
		t.Fatalf("produce batch: %+v", pr)
	}
	if id := parseID(reg.ProducerID.String()); string(id.raw) != "42" {
		t.Fatalf("id %s does not print and parse back as the number 42", id.raw)
	}
}

func TestRepliesMatchManagerAPI(t *testing.T) {
	var d describeTopicReply
	roundTrip(t, managerapi.TopicReply{Topic: managerapi.TopicInfo{Name: "t", Partitions: []managerapi.PartitionInfo{
		{Partition: 0, Leader: "b1", Replicas: []string{"b1", "b2"}}, {Partition: 1, Leader: "b2"}}}}, &d)
	if d.Name != "t" || len(d.Partitions) != 2 || d.Partitions[1].ID != 1 || d.Partitions[0].Leader != "b1" || len(d.Partitions[0].Replicas) != 2 {
		t.Fatalf("describe: %+v", d)
	}
	var l listTopicsReply
	roundTrip(t, managerapi.TopicsReply{Topics: []string{"a", "b"}}, &l)
	if len(l.Topics) != 2 || l.Topics[1] != "b" {
		t.Fatalf("list: %+v", l)
	}
	var reg registerReply
	roundTrip(t, managerapi.ConsumerReply{ConsumerID: 9}, &reg)
	if reg.ConsumerID.String() != "9" {
		t.Fatalf("consumer id: %s", reg.ConsumerID)
	}
	var p produceReply
	roundTrip(t, managerapi.ProduceReply{Partition: 2, Offset: 10, Count: 3}, &p)
	if p.Partition == nil || *p.Partition != 2 || p.Offset == nil || *p.Offset != 10 {
		t.Fatalf("produce: %+v", p)
	}
	msg := "m"
	var c consumeReply
	roundTrip(t, managerapi.ConsumeReply{Message: &msg, Partition: 1, Offset: 4, NextOffset: 9}, &c)
	if *c.Message != "m" || *c.Partition != 1 || *c.Offset != 4 {
		t.Fatalf("consume one: %+v", c)
	}
	c = consumeReply{}
	roundTrip(t, managerapi.ConsumeReply{Messages: []string{"x", "y"}, Partition: 1, Offset: 4}, &c)
	if len(c.Messages) != 2 || c.Messages[1].Message != "y" || *c.Offset != 4 {
		t.Fatalf("consume batch: %+v", c)
	}
}

func TestManagerCodesMapToErrors(t *testing.T) {
	for code, want := range map[string]error{
		managerapi.CodeUnknownTopic:    ErrUnknownTopic,
		managerapi.CodeUnknownProducer: ErrUnknownProducer,
		managerapi.CodeUnknownConsumer: ErrUnknownConsumer,
		managerapi.CodeTopicExists:     ErrTopicExists,
		managerapi.CodeNoMessage:       ErrNoMessage,
		managerapi.CodeInvalid:         nil,
	} {
		if err := newAPIError(404, "m", code, ""); err.Err != want || (want != nil && !errors.Is(err, want)) {
			t.Errorf("code %s maps to %v, want %v", code, err.Err, want)
		}
	}
}

// TestSDKLinksNoServer: a program using the SDK links neither Fiber nor Raft nor the
// managers' storage; the API packages it shares with the servers import only the
// standard library.
func TestSDKLinksNoServer(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, dep := range strings.Fields(string(out)) {
		for _, banned := range []string{"github.com/gofiber/", "github.com/hashicorp/raft", "github.com/uptrace/bun", "github.com/quorumq/quorumq/manager/meta"} {
			if strings.HasPrefix(dep, banned) {
				t.Errorf("clientlib links %s", dep)
			}
		}
	}
}
