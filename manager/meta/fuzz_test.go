package meta

import (
	"reflect"
	"testing"
)

// FuzzApply feeds arbitrary log entries to Decode and to the state machine, over a state
// with brokers and a topic: garbage must come back as an error or a refusal, never a
// panic, and whatever decodes must encode back to the same command.
func FuzzApply(f *testing.F) {
	p := 0
	for _, c := range []Command{
		CreateTopic{Name: "t", Partitions: 2, Replication: 2}, AddPartitions{Topic: "t", Count: 1},
		RegisterProducer{Topic: "t"}, RegisterConsumer{Topic: "t", Partition: &p},
		BrokerUp{ID: "b3", Addr: "a", RaftAddr: "r"}, BrokerDown{ID: "b1"},
		MoveReplica{Topic: "t", Partition: 0, From: "b1", To: "b2"}, SetLeader{Topic: "t", Partition: 0, Leader: "b2"},
		Decommission{ID: "b1"}, ReleaseBroker{ID: "b1"}, AddReplica{Topic: "t", Partition: 0, Broker: "b2"},
	} {
		f.Add(Encode(c))
	}
	f.Add([]byte{})
	f.Add([]byte{byte(TypeCreateTopic), Version, '{', '"', 'p'})
	f.Add([]byte{byte(TypeCreateTopic), Version, 'n', 'u', 'l', 'l'})
	f.Add(append([]byte{byte(TypeCreateTopic), Version}, `{"name":"u","partitions":1024,"replication":1000000000}`...))
	f.Fuzz(func(t *testing.T, b []byte) {
		if c, err := Decode(b); err == nil {
			again, err := Decode(Encode(reflect.ValueOf(c).Elem().Interface().(Command)))
			if err != nil || !reflect.DeepEqual(again, c) {
				t.Fatalf("%#v encodes to what decodes as %#v (%v)", c, again, err)
			}
		}
		s := NewState()
		for _, c := range []Command{BrokerUp{ID: "b1", Addr: "a1", RaftAddr: "r1"}, BrokerUp{ID: "b2", Addr: "a2", RaftAddr: "r2"},
			CreateTopic{Name: "t", Partitions: 2, Replication: 2}} {
			if res, _ := s.Apply(Encode(c)); res.Err != nil {
				t.Fatal(res.Err)
			}
		}
		s.Apply(b)
		DecodeResult(b)
	})
}
