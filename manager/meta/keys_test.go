package meta

import (
	"fmt"
	"slices"
	"testing"
)

const minute = int64(60 * 1000) // ms

func keyed(key string, at int64, c Command) Command {
	return Keyed{Key: key, At: at, Cmd: Encode(c)}
}

// TestKeyedRunsOnce: a command under a key runs once; a repeat answers the first
// result, refusals included; another command under the key is refused.
func TestKeyedRunsOnce(t *testing.T) {
	s := withBrokers(t, "b1")
	mustApply(t, s, CreateTopic{Name: "t", Partitions: 1, Replication: 1})
	first := mustApply(t, s, keyed("k", 0, RegisterProducer{Topic: "t"}))
	again := mustApply(t, s, keyed("k", minute, RegisterProducer{Topic: "t"}))
	if first.Replayed || !again.Replayed || again.ID != first.ID || s.NextProducer != first.ID+1 {
		t.Fatalf("first %+v, again %+v, next producer %d", first, again, s.NextProducer)
	}
	if r, _ := s.Apply(Encode(keyed("k", minute, RegisterProducer{Topic: "other"}))); r.Err == nil || r.Err.Code != CodeKeyReused {
		t.Fatalf("another request under the key: %+v", r)
	}
	for range 2 { // a refusal is a first outcome too
		if r, _ := s.Apply(Encode(keyed("dup", minute, CreateTopic{Name: "t", Partitions: 1, Replication: 1}))); r.Err == nil || r.Err.Code != CodeTopicExists {
			t.Fatalf("create of an existing topic: %+v", r)
		}
	}
	if r, _ := s.Apply(Encode(keyed("bad", minute, Keyed{Key: "x", Cmd: Encode(RegisterProducer{Topic: "t"})}))); r.Err == nil || r.Err.Code != CodeInvalid {
		t.Fatalf("nested keyed command: %+v", r)
	}
}

// TestKeyedUnavailableNotRemembered: a refusal for want of brokers changed nothing;
// the retry under the same key succeeds once a broker is there.
func TestKeyedUnavailableNotRemembered(t *testing.T) {
	s := NewState()
	create := keyed("k", 0, CreateTopic{Name: "t", Partitions: 1, Replication: 1})
	if r, ch := s.Apply(Encode(create)); r.Err == nil || r.Err.Code != CodeUnavailable || !ch.Empty() {
		t.Fatalf("create without brokers: %+v, %+v", r, ch)
	}
	mustApply(t, s, BrokerUp{ID: "b1"})
	if r := mustApply(t, s, create); r.Replayed || r.Topic == nil {
		t.Fatalf("create once a broker is up: %+v", r)
	}
}

// TestKeysExpire: a key goes once a keyed command stamped KeyRetention after it
// arrives; the store is told which keys went. A repeat after that runs again.
func TestKeysExpire(t *testing.T) {
	s := withBrokers(t, "b1")
	mustApply(t, s, CreateTopic{Name: "t", Partitions: 1, Replication: 1})
	first := mustApply(t, s, keyed("old", 0, RegisterProducer{Topic: "t"}))
	mustApply(t, s, keyed("young", 14*minute, RegisterProducer{Topic: "t"}))
	if r := mustApply(t, s, keyed("old", 15*minute, RegisterProducer{Topic: "t"})); !r.Replayed {
		t.Fatalf("within the retention: %+v", r)
	}
	r, ch := s.Apply(Encode(keyed("new", 15*minute+1, RegisterProducer{Topic: "t"})))
	if _, kept := s.Keys["old"]; kept || !slices.Equal(ch.Keys, []string{"old", "new"}) || r.Err != nil {
		t.Fatalf("after the retention: keys %v, changes %v", s.Keys, ch.Keys)
	}
	// A clock that stood still (another manager behind) does not bring keys back.
	if r := mustApply(t, s, keyed("old", 0, RegisterProducer{Topic: "t"})); r.Replayed || r.ID == first.ID {
		t.Fatalf("expired key ran again as %+v, first was %+v", r, first)
	}
}

// TestKeysBounded: past MaxKeys the oldest key goes.
func TestKeysBounded(t *testing.T) {
	s := withBrokers(t, "b1")
	mustApply(t, s, CreateTopic{Name: "t", Partitions: 1, Replication: 1})
	for i := range MaxKeys {
		s.Keys[fmt.Sprintf("k%06d", i)] = KeyEntry{At: int64(i), Sum: "x"}
	}
	_, ch := s.Apply(Encode(keyed("last", MaxKeys, RegisterProducer{Topic: "t"})))
	if _, kept := s.Keys["k000000"]; kept || len(s.Keys) != MaxKeys || !slices.Equal(ch.Keys, []string{"k000000", "last"}) {
		t.Fatalf("%d keys, oldest kept %v, changes %v", len(s.Keys), kept, ch.Keys)
	}
}
