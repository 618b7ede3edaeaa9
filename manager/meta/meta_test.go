package meta

import (
	"errors"
	"reflect"
	"testing"
)

func intp(i int) *int { return &i }

// withBrokers returns a state with alive brokers of the given ids.
func withBrokers(t *testing.T, ids ...string) *State {
	t.Helper()
	s := NewState()
	for _, id := range ids {
		mustApply(t, s, BrokerUp{ID: id, Addr: id + ":80", RaftAddr: id + ":90"})
	}
	return s
}

func mustApply(t *testing.T, s *State, c Command) Result {
	t.Helper()
	r, _ := s.Apply(Encode(c))
	if r.Err != nil {
		t.Fatalf("apply %T %+v: %v", c, c, r.Err)
	}
	return r
}

func TestApplyRefusals(t *testing.T) {
	s := withBrokers(t, "b1", "b2", "b3")
	mustApply(t, s, CreateTopic{Name: "orders", Partitions: 2, Replication: 3})
	mustApply(t, s, Decommission{ID: "b3"})
	cases := []struct {
		name string
		cmd  []byte
		code Code
	}{
		{"short", []byte{1}, CodeInvalid},
		{"unknown type", []byte{99, Version, '{', '}'}, CodeInvalid},
		{"unknown version", []byte{byte(TypeCreateTopic), 9, '{', '}'}, CodeInvalid},
		{"bad json", []byte{byte(TypeCreateTopic), Version, '{'}, CodeInvalid},
		{"empty name", Encode(CreateTopic{Partitions: 1, Replication: 1}), CodeInvalid},
		{"bad name", Encode(CreateTopic{Name: "a b", Partitions: 1, Replication: 1}), CodeInvalid},
		{"zero partitions", Encode(CreateTopic{Name: "x", Replication: 1}), CodeInvalid},
		{"too many partitions", Encode(CreateTopic{Name: "x", Partitions: MaxPartitions + 1, Replication: 1}), CodeInvalid},
		{"zero replication", Encode(CreateTopic{Name: "x", Partitions: 1}), CodeInvalid},
		{"duplicate topic", Encode(CreateTopic{Name: "orders", Partitions: 1, Replication: 1}), CodeTopicExists},
		{"grow unknown", Encode(AddPartitions{Topic: "nope", Count: 1}), CodeUnknownTopic},
		{"grow by zero", Encode(AddPartitions{Topic: "orders", Count: 0}), CodeInvalid},
		{"producer unknown topic", Encode(RegisterProducer{Topic: "nope"}), CodeUnknownTopic},
		{"consumer unknown topic", Encode(RegisterConsumer{Topic: "nope"}), CodeUnknownTopic},
		{"consumer bad partition", Encode(RegisterConsumer{Topic: "orders", Partition: intp(2)}), CodeUnknownPartition},
		{"consumer negative partition", Encode(RegisterConsumer{Topic: "orders", Partition: intp(-1)}), CodeUnknownPartition},
		{"broker up no id", Encode(BrokerUp{}), CodeInvalid},
		{"broker down unknown", Encode(BrokerDown{ID: "b9"}), CodeUnknownBroker},
		{"move unknown topic", Encode(MoveReplica{Topic: "nope", From: "b1", To: "b2"}), CodeUnknownTopic},
		{"move bad partition", Encode(MoveReplica{Topic: "orders", Partition: 5, From: "b1", To: "b2"}), CodeUnknownPartition},
		{"move to unknown", Encode(MoveReplica{Topic: "orders", From: "b1", To: "b9"}), CodeUnknownBroker},
		{"move to holder", Encode(MoveReplica{Topic: "orders", From: "b1", To: "b2"}), CodeConflict},
		{"leader not replica", Encode(SetLeader{Topic: "orders", Leader: "b9"}), CodeConflict},
		{"release holder", Encode(ReleaseBroker{ID: "b1"}), CodeConflict},
		{"release alive", Encode(ReleaseBroker{ID: "b2"}), CodeConflict},
		{"cancel alive", Encode(CancelDecommission{ID: "b1"}), CodeConflict},
		{"cancel unknown", Encode(CancelDecommission{ID: "b9"}), CodeUnknownBroker},
		{"release unknown", Encode(ReleaseBroker{ID: "b9"}), CodeUnknownBroker},
		{"add replica full", Encode(AddReplica{Topic: "orders", Broker: "b3"}), CodeConflict},
		{"add replica holder", Encode(AddReplica{Topic: "orders", Broker: "b1"}), CodeConflict},
		{"add replica unknown broker", Encode(AddReplica{Topic: "orders", Broker: "b9"}), CodeUnknownBroker},
		{"add replica unknown topic", Encode(AddReplica{Topic: "nope", Broker: "b1"}), CodeUnknownTopic},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := s.Clone()
			r, ch := s.Apply(c.cmd)
			if r.Err == nil || r.Err.Code != c.code {
				t.Fatalf("got %+v, want code %s", r.Err, c.code)
			}
			if !ch.Empty() || !reflect.DeepEqual(before, s) {
				t.Fatal("a refused command changed the state")
			}
			_, err := DecodeResult(EncodeResult(r))
			var me *Error
			if !errors.As(err, &me) || me.Code != c.code {
				t.Fatalf("round-tripped error %v, want code %s", err, c.code)
			}
		})
	}
}

// A topic created with fewer alive brokers than its replication factor is topped up
// once brokers join.
func TestTopUp(t *testing.T) {
	s := withBrokers(t, "b1")
	mustApply(t, s, CreateTopic{Name: "t", Partitions: 2, Replication: 3})
	mustApply(t, s, BrokerUp{ID: "b2"})
	mustApply(t, s, BrokerUp{ID: "b3"})
	for range 2 {
		for _, m := range PlanBalance(s.PlanInput()).Moves {
			if m.From != "" {
				t.Fatalf("top-up move %+v has a source", m)
			}
			mustApply(t, s, AddReplica{Topic: m.Topic, Partition: m.Partition, Broker: m.To})
		}
	}
	if moves := PlanBalance(s.PlanInput()).Moves; len(moves) != 0 {
		t.Fatalf("still moves to make: %+v", moves)
	}
	for _, p := range s.Topics["t"].Partitions {
		if !reflect.DeepEqual(p.Replicas, []string{"b1", "b2", "b3"}) {
			t.Fatalf("partition %+v", p)
		}
	}
}

func TestNoBrokers(t *testing.T) {
	s := NewState()
	r, _ := s.Apply(Encode(CreateTopic{Name: "x", Partitions: 1, Replication: 3}))
	if r.Err == nil || r.Err.Code != CodeUnavailable {
		t.Fatalf("got %+v, want unavailable", r.Err)
	}
}

func TestLifecycle(t *testing.T) {
	s := withBrokers(t, "b1", "b2", "b3", "b4")
	r := mustApply(t, s, CreateTopic{Name: "orders", Partitions: 4, Replication: 3})
	if len(r.Topic.Partitions) != 4 {
		t.Fatalf("partitions = %d", len(r.Topic.Partitions))
	}
	leaders := map[string]int{}
	for _, p := range r.Topic.Partitions {
		if len(p.Replicas) != 3 || !p.Has(p.Leader) {
			t.Fatalf("partition %+v", p)
		}
		leaders[p.Leader]++
	}
	if len(leaders) != 4 {
		t.Fatalf("leaders not balanced: %v", leaders)
	}
	for _, b := range s.BrokerList() {
		if b.Replicas != 3 || b.Leaders != 1 {
			t.Fatalf("broker %+v: want 3 replicas, 1 leader", b)
		}
	}

	r = mustApply(t, s, AddPartitions{Topic: "orders", Count: 2})
	if len(r.Topic.Partitions) != 6 || r.Topic.Partitions[5].Index != 5 {
		t.Fatalf("after grow: %+v", r.Topic.Partitions)
	}

	if id := mustApply(t, s, RegisterProducer{Topic: "orders"}).ID; id != 1 {
		t.Fatalf("producer id %d", id)
	}
	if id := mustApply(t, s, RegisterProducer{Topic: "orders"}).ID; id != 2 {
		t.Fatalf("producer id %d", id)
	}
	if id := mustApply(t, s, RegisterConsumer{Topic: "orders", Partition: intp(3)}).ID; id != 1 {
		t.Fatalf("consumer id %d", id)
	}
	if p := s.Consumers[1].Partition; p == nil || *p != 3 {
		t.Fatalf("consumer partition %v", p)
	}

	mustApply(t, s, BrokerDown{ID: "b2"})
	if s.Brokers["b2"].State != BrokerDead {
		t.Fatal("b2 not dead")
	}
	held := s.PartitionsOf("b2")
	moves := PlanBalance(s.PlanInput()).Moves
	if len(moves) != len(held) {
		t.Fatalf("moves %v for %d partitions", moves, len(held))
	}
	for _, m := range moves {
		mustApply(t, s, MoveReplica(m))
	}
	if n := len(s.PartitionsOf("b2")); n != 0 {
		t.Fatalf("b2 still holds %d", n)
	}
	for _, p := range s.Topics["orders"].Partitions {
		if len(p.Replicas) != 3 || !p.Has(p.Leader) || p.Has("b2") {
			t.Fatalf("after evacuation: %+v", p)
		}
	}
	mustApply(t, s, BrokerUp{ID: "b2", Addr: "new:80"})
	if b := s.Brokers["b2"]; b.State != BrokerAlive || b.Addr != "new:80" {
		t.Fatalf("b2 back: %+v", b)
	}
	mustApply(t, s, Decommission{ID: "b2"})
	mustApply(t, s, CancelDecommission{ID: "b2"})
	if s.Brokers["b2"].State != BrokerAlive {
		t.Fatalf("cancelled decommission left b2 %s", s.Brokers["b2"].State)
	}
	mustApply(t, s, Decommission{ID: "b2"})
	mustApply(t, s, BrokerUp{ID: "b2"})
	if s.Brokers["b2"].State != BrokerDecommissioning {
		t.Fatal("a heartbeat must not cancel a decommission")
	}
	mustApply(t, s, ReleaseBroker{ID: "b2"})
	mustApply(t, s, BrokerUp{ID: "b2"})
	if s.Brokers["b2"].State != BrokerReleased {
		t.Fatal("b2 not released, or taken back by a heartbeat")
	}
	p := s.Topics["orders"].Partitions[0]
	mustApply(t, s, SetLeader{Topic: "orders", Partition: 0, Leader: p.Replicas[2]})
	if s.Topics["orders"].Partitions[0].Leader != p.Replicas[2] {
		t.Fatal("leader not set")
	}
}

// Two states fed the same commands end equal, and a snapshot round trip is exact.
func TestDeterministicAndSnapshot(t *testing.T) {
	cmds := []Command{
		BrokerUp{ID: "b3"}, BrokerUp{ID: "b1"}, BrokerUp{ID: "b2"},
		CreateTopic{Name: "a", Partitions: 5, Replication: 2},
		CreateTopic{Name: "b", Partitions: 3, Replication: 3},
		RegisterProducer{Topic: "a"}, RegisterConsumer{Topic: "b"},
		BrokerDown{ID: "b1"}, AddPartitions{Topic: "b", Count: 2},
		Keyed{Key: "k1", At: 1000, Cmd: Encode(CreateTopic{Name: "c", Partitions: 1, Replication: 2})},
		Keyed{Key: "k1", At: 2000, Cmd: Encode(CreateTopic{Name: "c", Partitions: 1, Replication: 2})},
		Keyed{Key: "k2", At: 3000, Cmd: Encode(RegisterConsumer{Topic: "c", Partition: intp(0)})},
	}
	a, b := NewState(), NewState()
	for _, c := range cmds {
		ra, _ := a.Apply(Encode(c))
		rb, _ := b.Apply(Encode(c))
		if !reflect.DeepEqual(EncodeResult(ra), EncodeResult(rb)) {
			t.Fatalf("results differ for %+v", c)
		}
	}
	if !reflect.DeepEqual(a, b) {
		t.Fatal("states differ")
	}
	raw, err := a.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	c, err := Unmarshal(raw)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(a, c) {
		t.Fatalf("snapshot round trip differs:\n%+v\n%+v", a, c)
	}
	clone := a.Clone()
	clone.Topics["a"].Partitions[0].Replicas[0] = "zz"
	if a.Topics["a"].Partitions[0].Replicas[0] == "zz" {
		t.Fatal("clone shares replicas")
	}
}

func TestPlace(t *testing.T) {
	loads := func(ids ...string) []Load {
		var out []Load
		for _, id := range ids {
			out = append(out, Load{ID: id})
		}
		return out
	}
	cases := []struct {
		name       string
		candidates []Load
		n, rf      int
		want       []Assignment
	}{
		{"none", nil, 3, 3, nil},
		{"rf capped", loads("b1", "b2"), 1, 3, []Assignment{{Replicas: []string{"b1", "b2"}, Leader: "b1"}}},
		{"leaders rotate", loads("b1", "b2", "b3"), 3, 3, []Assignment{
			{Replicas: []string{"b1", "b2", "b3"}, Leader: "b1"},
			{Replicas: []string{"b1", "b2", "b3"}, Leader: "b2"},
			{Replicas: []string{"b1", "b2", "b3"}, Leader: "b3"},
		}},
		{"spread", loads("b1", "b2", "b3", "b4"), 2, 2, []Assignment{
			{Replicas: []string{"b1", "b2"}, Leader: "b1"},
			{Replicas: []string{"b3", "b4"}, Leader: "b3"},
		}},
		{"prefers empty", []Load{{ID: "b1", Replicas: 5, Leaders: 2}, {ID: "b2"}, {ID: "b3"}}, 1, 2,
			[]Assignment{{Replicas: []string{"b2", "b3"}, Leader: "b2"}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := Place(c.candidates, c.n, c.rf)
			if !reflect.DeepEqual(got, c.want) {
				t.Fatalf("got %+v, want %+v", got, c.want)
			}
		})
	}
}
