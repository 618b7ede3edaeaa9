// Package meta is the managers' metadata state machine in plain Go: topics, their
// partitions and replica placement, brokers and their state, producers and consumers.
// It knows nothing of Raft, PostgreSQL or HTTP: State.Apply takes an encoded command and
// returns a result plus the set of entities it changed, deterministically.
package meta

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"sort"
)

// BrokerState is where a broker stands in the managers' eyes.
type BrokerState string

const (
	BrokerAlive           BrokerState = "alive"
	BrokerDead            BrokerState = "dead"
	BrokerDecommissioning BrokerState = "decommissioning"
	// BrokerReleased is a decommissioned broker emptied of replicas. It stays known so
	// that a process still registered under its id is not taken back by accident.
	BrokerReleased BrokerState = "released"
)

// Broker is one broker process known to the managers.
type Broker struct {
	ID       string      `json:"id"`
	Addr     string      `json:"addr"`      // HTTP API host:port
	RaftAddr string      `json:"raft_addr"` // shared Raft listener host:port
	State    BrokerState `json:"state"`
}

// Partition is one partition of a topic: the brokers holding its replicas, and the
// broker the managers last saw (or chose) as its Raft leader.
type Partition struct {
	Topic    string   `json:"topic"`
	Index    int      `json:"index"`
	Replicas []string `json:"replicas"`
	Leader   string   `json:"leader"`
	// Retention is the topic's, here too because the brokers enforce it per replica.
	Retention
}

// GroupName is the partition's Raft group name on the brokers.
func (p Partition) GroupName() string { return GroupName(p.Topic, p.Index) }

// Has reports whether broker id holds a replica of p.
func (p Partition) Has(id string) bool { return slices.Contains(p.Replicas, id) }

// Topic is a named log split into partitions.
type Topic struct {
	Name        string      `json:"name"`
	Replication int         `json:"replication"`
	Partitions  []Partition `json:"partitions"`
	Retention
}

// Producer is a registered producer of a topic.
type Producer struct {
	ID    uint64 `json:"id"`
	Topic string `json:"topic"`
}

// Consumer is a registered consumer of a topic, optionally pinned to one partition.
type Consumer struct {
	ID        uint64 `json:"id"`
	Topic     string `json:"topic"`
	Partition *int   `json:"partition,omitempty"`
	// Last and Next are where its consumes by seq left it (consumeseq.go); they are
	// replaced, never changed in place.
	Last *SeqReply      `json:"last,omitempty"`
	Next map[int]uint64 `json:"next,omitempty"`
}

// State is the whole metadata. The zero value is not usable; call NewState.
type State struct {
	Topics       map[string]*Topic   `json:"topics"`
	Brokers      map[string]*Broker  `json:"brokers"`
	Producers    map[uint64]Producer `json:"producers"`
	Consumers    map[uint64]Consumer `json:"consumers"`
	NextProducer uint64              `json:"next_producer"`
	NextConsumer uint64              `json:"next_consumer"`
	Keys         map[string]KeyEntry `json:"keys,omitempty"` // idempotency keys (keys.go)
}

// NewState returns an empty metadata state.
func NewState() *State {
	return &State{
		Topics:       map[string]*Topic{},
		Brokers:      map[string]*Broker{},
		Producers:    map[uint64]Producer{},
		Consumers:    map[uint64]Consumer{},
		NextProducer: 1,
		NextConsumer: 1,
		Keys:         map[string]KeyEntry{},
	}
}

// Clone returns a deep copy, so that a snapshot or a reader never sees later changes.
func (s *State) Clone() *State {
	c := &State{
		Topics:       make(map[string]*Topic, len(s.Topics)),
		Brokers:      make(map[string]*Broker, len(s.Brokers)),
		Producers:    maps.Clone(s.Producers),
		Consumers:    make(map[uint64]Consumer, len(s.Consumers)),
		NextProducer: s.NextProducer,
		NextConsumer: s.NextConsumer,
		// Entries are never changed in place, and a result's topic is a copy.
		Keys: maps.Clone(s.Keys),
	}
	for name, t := range s.Topics {
		c.Topics[name] = t.clone()
	}
	for id, b := range s.Brokers {
		bb := *b
		c.Brokers[id] = &bb
	}
	for id, con := range s.Consumers {
		c.Consumers[id] = con.clone()
	}
	return c
}

// CopyChanged copies into to the entities ch names as s holds them now (removing from
// to those s no longer has) and the counters: to then holds what a write of ch needs,
// unaffected by later changes to s.
func (s *State) CopyChanged(to *State, ch Changes) {
	copyEach(to.Topics, s.Topics, ch.Topics, (*Topic).clone)
	copyEach(to.Brokers, s.Brokers, ch.Brokers, func(b *Broker) *Broker { bb := *b; return &bb })
	copyEach(to.Producers, s.Producers, ch.Producers, func(p Producer) Producer { return p })
	copyEach(to.Consumers, s.Consumers, ch.Consumers, Consumer.clone)
	copyEach(to.Consumers, s.Consumers, ch.Positions, Consumer.clone)
	// Entries are never changed in place.
	copyEach(to.Keys, s.Keys, ch.Keys, func(e KeyEntry) KeyEntry { return e })
	to.NextProducer, to.NextConsumer = s.NextProducer, s.NextConsumer
}

func copyEach[K comparable, V any](to, from map[K]V, keys []K, clone func(V) V) {
	for _, k := range keys {
		if v, ok := from[k]; ok {
			to[k] = clone(v)
		} else {
			delete(to, k)
		}
	}
}

func (t *Topic) clone() *Topic {
	c := *t
	c.Partitions = make([]Partition, len(t.Partitions))
	for i, p := range t.Partitions {
		p.Replicas = slices.Clone(p.Replicas)
		c.Partitions[i] = p
	}
	return &c
}

func (c Consumer) clone() Consumer {
	if c.Partition != nil {
		p := *c.Partition
		c.Partition = &p
	}
	return c
}

// TopicNames lists the topics in name order.
func (s *State) TopicNames() []string {
	names := slices.Collect(maps.Keys(s.Topics))
	sort.Strings(names)
	return names
}

// Topic returns a copy of a topic.
func (s *State) Topic(name string) (Topic, bool) {
	t, ok := s.Topics[name]
	if !ok {
		return Topic{}, false
	}
	return *t.clone(), true
}

// BrokerInfo is a broker together with what it holds.
type BrokerInfo struct {
	Broker
	Replicas int `json:"replicas"`
	Leaders  int `json:"leaders"`
}

// BrokerList lists the brokers in ID order with their replica and leader counts.
func (s *State) BrokerList() []BrokerInfo {
	loads := s.loads()
	out := make([]BrokerInfo, 0, len(s.Brokers))
	for _, b := range s.Brokers {
		l := loads[b.ID]
		out = append(out, BrokerInfo{Broker: *b, Replicas: l.Replicas, Leaders: l.Leaders})
	}
	slices.SortFunc(out, func(a, b BrokerInfo) int { return cmpString(a.ID, b.ID) })
	return out
}

// PartitionsOf lists copies of the partitions holding a replica on broker id.
func (s *State) PartitionsOf(id string) []Partition {
	var out []Partition
	for _, name := range s.TopicNames() {
		for _, p := range s.Topics[name].Partitions {
			if p.Has(id) {
				p.Replicas = slices.Clone(p.Replicas)
				out = append(out, p)
			}
		}
	}
	return out
}

// PlanInput is the placement as PlanBalance takes it: every broker, and every
// partition in topic and index order with the leader the metadata records.
func (s *State) PlanInput() PlanInput {
	var in PlanInput
	for _, b := range s.BrokerList() {
		in.Brokers = append(in.Brokers, b.Broker)
	}
	for _, name := range s.TopicNames() {
		t := s.Topics[name]
		for _, p := range t.Partitions {
			p.Replicas = slices.Clone(p.Replicas)
			in.Partitions = append(in.Partitions, PlanPartition{Partition: p, Replication: t.Replication})
		}
	}
	return in
}

// loads counts replicas and leaderships per known broker.
func (s *State) loads() map[string]*Load {
	out := make(map[string]*Load, len(s.Brokers))
	for id := range s.Brokers {
		out[id] = &Load{ID: id}
	}
	for _, t := range s.Topics {
		for _, p := range t.Partitions {
			for _, r := range p.Replicas {
				if l := out[r]; l != nil {
					l.Replicas++
				}
			}
			if l := out[p.Leader]; l != nil {
				l.Leaders++
			}
		}
	}
	return out
}

// HealthyLoads lists the loads of the alive brokers in ID order: the candidates for
// new replicas.
func (s *State) HealthyLoads() []Load {
	all := s.loads()
	var out []Load
	for id, b := range s.Brokers {
		if b.State == BrokerAlive {
			out = append(out, *all[id])
		}
	}
	slices.SortFunc(out, func(a, b Load) int { return cmpString(a.ID, b.ID) })
	return out
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// Marshal encodes the whole state (a snapshot's payload).
func (s *State) Marshal() ([]byte, error) { return json.Marshal(s) }

// Unmarshal decodes a state written by Marshal.
func Unmarshal(b []byte) (*State, error) {
	s := NewState()
	if err := json.Unmarshal(b, s); err != nil {
		return nil, fmt.Errorf("meta: decode state: %w", err)
	}
	return s, nil
}
