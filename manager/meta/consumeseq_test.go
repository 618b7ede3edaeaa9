package meta

import "testing"

// TestConsumed: a partition's position is learned once; a reply recorded moves it;
// the same record again changes nothing; an older or different seq is refused.
func TestConsumed(t *testing.T) {
	s := withBrokers(t, "b1")
	mustApply(t, s, CreateTopic{Name: "t", Partitions: 2, Replication: 1})
	id := mustApply(t, s, RegisterConsumer{Topic: "t"}).ID
	mustApply(t, s, Consumed{Consumer: id, Partition: 1, From: 4})
	mustApply(t, s, Consumed{Consumer: id, Partition: 1, From: 9}) // learned twice: the first stands
	if n := s.Consumers[id].Next[1]; n != 4 {
		t.Fatalf("next %d, want 4", n)
	}
	rec := Consumed{Consumer: id, Seq: 3, Partition: 1, From: 4, Count: 2}
	mustApply(t, s, rec)
	if _, ch := s.Apply(Encode(rec)); !ch.Empty() {
		t.Fatalf("the same record again changed %+v", ch)
	}
	if c := s.Consumers[id]; c.Next[1] != 6 || *c.Last != (SeqReply{Seq: 3, Partition: 1, From: 4, Count: 2}) {
		t.Fatalf("consumer %+v", c)
	}
	for _, bad := range []Consumed{
		{Consumer: id, Seq: 3, Partition: 0, From: 0, Count: 1}, // same seq, another reply
		{Consumer: id, Seq: 2, Partition: 1, From: 6, Count: 1}, // older seq
		{Consumer: id, Seq: 4, Partition: 5, From: 0, Count: 1}, // no such partition
		{Consumer: 99, Seq: 4, Partition: 0, From: 0, Count: 1}, // no such consumer
	} {
		if r, ch := s.Apply(Encode(bad)); r.Err == nil || !ch.Empty() {
			t.Fatalf("%+v: %+v %+v, want a refusal", bad, r, ch)
		}
	}
}
