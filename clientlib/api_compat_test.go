package clientlib

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/quorumq/quorumq/manager"
)

// The SDK keeps its own copy of the wire types so that programs using it do not link
// the managers (Fiber, Raft, PostgreSQL). These tests hold the two copies together.

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
	var ct manager.CreateTopicRequest
	roundTrip(t, createTopicRequest{Name: "t", Partitions: 3}, &ct)
	if ct.Name != "t" || ct.Partitions != 3 {
		t.Fatalf("create topic: %+v", ct)
	}
	var ap manager.AddPartitionsRequest
	roundTrip(t, addPartitionsRequest{Count: 2}, &ap)
	if ap.Count != 2 {
		t.Fatalf("add partitions: %+v", ap)
	}
	two := 2
	var rr manager.RegisterRequest
	roundTrip(t, registerRequest{Topic: "t", Partition: &two}, &rr)
	if rr.Topic != "t" || rr.Partition == nil || *rr.Partition != 2 {
		t.Fatalf("register: %+v", rr)
	}
	var reg registerReply
	roundTrip(t, manager.ProducerReply{ProducerID: 42}, &reg)
	seq, msg := uint64(7), "hello"
	var pr manager.ProduceRequest
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
	roundTrip(t, manager.TopicReply{Topic: manager.TopicInfo{Name: "t", Partitions: []manager.PartitionInfo{
		{Partition: 0, Leader: "b1", Replicas: []string{"b1", "b2"}}, {Partition: 1, Leader: "b2"}}}}, &d)
	if d.Name != "t" || len(d.Partitions) != 2 || d.Partitions[1].ID != 1 || d.Partitions[0].Leader != "b1" || len(d.Partitions[0].Replicas) != 2 {
		t.Fatalf("describe: %+v", d)
	}
	var l listTopicsReply
	roundTrip(t, manager.TopicsReply{Topics: []string{"a", "b"}}, &l)
	if len(l.Topics) != 2 || l.Topics[1] != "b" {
		t.Fatalf("list: %+v", l)
	}
	var reg registerReply
	roundTrip(t, manager.ConsumerReply{ConsumerID: 9}, &reg)
	if reg.ConsumerID.String() != "9" {
		t.Fatalf("consumer id: %s", reg.ConsumerID)
	}
	var p produceReply
	roundTrip(t, manager.ProduceReply{Partition: 2, Offset: 10, Count: 3}, &p)
	if p.Partition == nil || *p.Partition != 2 || p.Offset == nil || *p.Offset != 10 {
		t.Fatalf("produce: %+v", p)
	}
	msg := "m"
	var c consumeReply
	roundTrip(t, manager.ConsumeReply{Message: &msg, Partition: 1, Offset: 4, NextOffset: 9}, &c)
	if *c.Message != "m" || *c.Partition != 1 || *c.Offset != 4 {
		t.Fatalf("consume one: %+v", c)
	}
	c = consumeReply{}
	roundTrip(t, manager.ConsumeReply{Messages: []string{"x", "y"}, Partition: 1, Offset: 4}, &c)
	if len(c.Messages) != 2 || c.Messages[1].Message != "y" || *c.Offset != 4 {
		t.Fatalf("consume batch: %+v", c)
	}
	var s sizeReply
	roundTrip(t, manager.SizeReply{Size: 5}, &s)
	if s.Size != 5 {
		t.Fatalf("size: %+v", s)
	}
}

func TestManagerCodesMapToErrors(t *testing.T) {
	for code, want := range map[string]error{
		manager.CodeUnknownTopic:    ErrUnknownTopic,
		manager.CodeUnknownProducer: ErrUnknownProducer,
		manager.CodeUnknownConsumer: ErrUnknownConsumer,
		manager.CodeTopicExists:     ErrTopicExists,
		manager.CodeNoMessage:       ErrNoMessage,
		manager.CodeInvalid:         nil,
	} {
		var f failureReply
		roundTrip(t, manager.Failure{Status: "failure", Message: "m", Code: code}, &f)
		if err := newAPIError(404, f.Message, f.Code, ""); err.Err != want || (want != nil && !errors.Is(err, want)) {
			t.Errorf("code %s maps to %v, want %v", code, err.Err, want)
		}
	}
}

func TestManagerOutcomesMatch(t *testing.T) {
	for _, o := range []string{manager.OutcomeNotApplied, manager.OutcomeUnknown} {
		var f failureReply
		roundTrip(t, manager.Failure{Status: "failure", Message: "m", Outcome: o}, &f)
		if f.Outcome != o {
			t.Errorf("outcome %q read as %q", o, f.Outcome)
		}
	}
	if manager.OutcomeNotApplied != outcomeNotApplied || manager.OutcomeUnknown != outcomeUnknown {
		t.Fatal("the SDK's outcome words differ from the managers'")
	}
}
