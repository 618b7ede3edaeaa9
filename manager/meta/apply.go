package meta

import (
	"regexp"
	"slices"
)

// Limits on what a command may ask for.
const (
	MaxPartitions   = 1024 // per topic
	MaxTopicNameLen = 200
)

var topicName = regexp.MustCompile(`^[A-Za-z0-9._-]+$`)

// Changes names what one command touched, so that a store can rewrite just those rows.
// A broker named here but absent from the state was removed.
type Changes struct {
	Topics    []string
	Brokers   []string
	Producers []uint64
	Consumers []uint64
	Counters  bool     // NextProducer / NextConsumer moved
	Keys      []string // idempotency keys added, or removed when absent from the state
	Positions []uint64 // consumers whose positions by seq (Last, Next) moved
}

// Empty reports whether nothing changed.
func (c Changes) Empty() bool {
	return len(c.Topics) == 0 && len(c.Brokers) == 0 && len(c.Producers) == 0 &&
		len(c.Consumers) == 0 && !c.Counters && len(c.Keys) == 0 && len(c.Positions) == 0
}

// Apply runs one encoded command against the state. It never fails as a call: a command
// that cannot be decoded or is refused gives a Result carrying the Error, and no changes.
// It depends on nothing but the state and the command, so every manager agrees.
func (s *State) Apply(cmd []byte) (Result, Changes) {
	c, err := Decode(cmd)
	if err != nil {
		return Result{Err: errf(CodeInvalid, "%v", err)}, Changes{}
	}
	switch c := c.(type) {
	case *CreateTopic:
		return s.createTopic(c)
	case *AddPartitions:
		return s.addPartitions(c)
	case *RegisterProducer:
		return s.registerProducer(c)
	case *RegisterConsumer:
		return s.registerConsumer(c)
	case *BrokerUp:
		return s.brokerUp(c)
	case *BrokerDown:
		return s.brokerDown(c)
	case *MoveReplica:
		return s.moveReplica(c)
	case *SetLeader:
		return s.setLeader(c)
	case *Decommission:
		return s.decommission(c)
	case *ReleaseBroker:
		return s.releaseBroker(c)
	case *AddReplica:
		return s.addReplica(c)
	case *CancelDecommission:
		return s.cancelDecommission(c)
	case *Keyed:
		return s.keyed(c)
	case *Consumed:
		return s.consumed(c)
	}
	return Result{Err: errf(CodeInvalid, "meta: command %T has no handler", c)}, Changes{}
}

func fail(e *Error) (Result, Changes) { return Result{Err: e}, Changes{} }

// ValidateTopicName says why a topic name is unusable, or nil.
func ValidateTopicName(name string) *Error {
	switch {
	case name == "":
		return errf(CodeInvalid, "topic name is empty")
	case len(name) > MaxTopicNameLen:
		return errf(CodeInvalid, "topic name is longer than %d characters", MaxTopicNameLen)
	case !topicName.MatchString(name):
		return errf(CodeInvalid, "topic name %q may only hold letters, digits, '.', '_' and '-'", name)
	}
	return nil
}

func (s *State) createTopic(c *CreateTopic) (Result, Changes) {
	if e := ValidateTopicName(c.Name); e != nil {
		return fail(e)
	}
	if c.Partitions < 1 || c.Partitions > MaxPartitions {
		return fail(errf(CodeInvalid, "partitions must be between 1 and %d, got %d", MaxPartitions, c.Partitions))
	}
	if c.Replication < 1 {
		return fail(errf(CodeInvalid, "replication must be at least 1, got %d", c.Replication))
	}
	if c.Retention.Ms < 0 || c.Retention.Bytes < 0 {
		return fail(errf(CodeInvalid, "retention_ms and retention_bytes must not be negative"))
	}
	if _, ok := s.Topics[c.Name]; ok {
		return fail(errf(CodeTopicExists, "topic %q already exists", c.Name))
	}
	healthy := s.HealthyLoads()
	if len(healthy) == 0 {
		return fail(errf(CodeUnavailable, "no alive broker to place topic %q on", c.Name))
	}
	t := &Topic{Name: c.Name, Replication: c.Replication, Retention: c.Retention}
	t.Partitions = partitions(t, 0, Place(healthy, c.Partitions, c.Replication))
	s.Topics[c.Name] = t
	return Result{Topic: t.clone()}, Changes{Topics: []string{c.Name}}
}

func partitions(t *Topic, first int, as []Assignment) []Partition {
	out := make([]Partition, len(as))
	for i, a := range as {
		out[i] = Partition{Topic: t.Name, Index: first + i, Replicas: a.Replicas, Leader: a.Leader, Retention: t.Retention}
	}
	return out
}

func (s *State) addPartitions(c *AddPartitions) (Result, Changes) {
	t, ok := s.Topics[c.Topic]
	if !ok {
		return fail(unknownTopic(c.Topic))
	}
	if c.Count < 1 || len(t.Partitions)+c.Count > MaxPartitions {
		return fail(errf(CodeInvalid, "count must be at least 1 and the topic at most %d partitions; it has %d, asked to add %d",
			MaxPartitions, len(t.Partitions), c.Count))
	}
	healthy := s.HealthyLoads()
	if len(healthy) == 0 {
		return fail(errf(CodeUnavailable, "no alive broker to place new partitions of %q on", c.Topic))
	}
	t.Partitions = append(t.Partitions, partitions(t, len(t.Partitions), Place(healthy, c.Count, t.Replication))...)
	return Result{Topic: t.clone()}, Changes{Topics: []string{c.Topic}}
}

func unknownTopic(name string) *Error { return errf(CodeUnknownTopic, "topic %q does not exist", name) }

func (s *State) registerProducer(c *RegisterProducer) (Result, Changes) {
	if _, ok := s.Topics[c.Topic]; !ok {
		return fail(unknownTopic(c.Topic))
	}
	id := s.NextProducer
	s.NextProducer++
	s.Producers[id] = Producer{ID: id, Topic: c.Topic}
	return Result{ID: id}, Changes{Producers: []uint64{id}, Counters: true}
}

func (s *State) registerConsumer(c *RegisterConsumer) (Result, Changes) {
	t, ok := s.Topics[c.Topic]
	if !ok {
		return fail(unknownTopic(c.Topic))
	}
	if c.Partition != nil && (*c.Partition < 0 || *c.Partition >= len(t.Partitions)) {
		return fail(errf(CodeUnknownPartition, "topic %q has no partition %d (it has %d)", c.Topic, *c.Partition, len(t.Partitions)))
	}
	id := s.NextConsumer
	s.NextConsumer++
	s.Consumers[id] = Consumer{ID: id, Topic: c.Topic, Partition: c.Partition}.clone()
	return Result{ID: id}, Changes{Consumers: []uint64{id}, Counters: true}
}

func (s *State) brokerUp(c *BrokerUp) (Result, Changes) {
	if c.ID == "" {
		return fail(errf(CodeInvalid, "broker id is empty"))
	}
	b, ok := s.Brokers[c.ID]
	if !ok {
		b = &Broker{ID: c.ID, State: BrokerAlive}
		s.Brokers[c.ID] = b
	}
	b.Addr, b.RaftAddr = c.Addr, c.RaftAddr
	if b.State == BrokerDead {
		b.State = BrokerAlive
	}
	return Result{}, Changes{Brokers: []string{c.ID}}
}

func (s *State) brokerDown(c *BrokerDown) (Result, Changes) {
	b, ok := s.Brokers[c.ID]
	if !ok {
		return fail(unknownBroker(c.ID))
	}
	b.State = BrokerDead
	return Result{}, Changes{Brokers: []string{c.ID}}
}

func unknownBroker(id string) *Error { return errf(CodeUnknownBroker, "broker %q is not known", id) }

func (s *State) partition(topic string, index int) (*Topic, *Partition, *Error) {
	t, ok := s.Topics[topic]
	if !ok {
		return nil, nil, unknownTopic(topic)
	}
	if index < 0 || index >= len(t.Partitions) {
		return nil, nil, errf(CodeUnknownPartition, "topic %q has no partition %d", topic, index)
	}
	return t, &t.Partitions[index], nil
}

func (s *State) moveReplica(c *MoveReplica) (Result, Changes) {
	_, p, e := s.partition(c.Topic, c.Partition)
	if e != nil {
		return fail(e)
	}
	if _, ok := s.Brokers[c.To]; !ok {
		return fail(unknownBroker(c.To))
	}
	if !p.Has(c.From) {
		return fail(errf(CodeConflict, "partition %s/%d has no replica on %q", c.Topic, c.Partition, c.From))
	}
	if p.Has(c.To) {
		return fail(errf(CodeConflict, "partition %s/%d already has a replica on %q", c.Topic, c.Partition, c.To))
	}
	p.Replicas[slices.Index(p.Replicas, c.From)] = c.To
	slices.Sort(p.Replicas)
	if p.Leader == c.From {
		// A hint only: the partition's own election decides, and the next SetLeader
		// records the winner.
		p.Leader = p.Replicas[0]
	}
	return Result{}, Changes{Topics: []string{c.Topic}}
}

func (s *State) setLeader(c *SetLeader) (Result, Changes) {
	_, p, e := s.partition(c.Topic, c.Partition)
	if e != nil {
		return fail(e)
	}
	if !p.Has(c.Leader) {
		return fail(errf(CodeConflict, "partition %s/%d has no replica on %q", c.Topic, c.Partition, c.Leader))
	}
	if p.Leader == c.Leader {
		return Result{}, Changes{}
	}
	p.Leader = c.Leader
	return Result{}, Changes{Topics: []string{c.Topic}}
}

func (s *State) decommission(c *Decommission) (Result, Changes) {
	b, ok := s.Brokers[c.ID]
	if !ok {
		return fail(unknownBroker(c.ID))
	}
	b.State = BrokerDecommissioning
	return Result{}, Changes{Brokers: []string{c.ID}}
}

// decommissioning is the broker id, which must be decommissioning: a release
// or a cancel of anything else is refused (a release can meet a broker whose
// decommission was cancelled while the health loop saw it empty).
func (s *State) decommissioning(id string) (*Broker, *Error) {
	b, ok := s.Brokers[id]
	if !ok {
		return nil, unknownBroker(id)
	}
	if b.State != BrokerDecommissioning {
		return nil, errf(CodeConflict, "broker %q is %s, not decommissioning", id, b.State)
	}
	return b, nil
}

func (s *State) releaseBroker(c *ReleaseBroker) (Result, Changes) {
	b, e := s.decommissioning(c.ID)
	if e != nil {
		return fail(e)
	}
	if n := len(s.PartitionsOf(c.ID)); n > 0 {
		return fail(errf(CodeConflict, "broker %q still holds %d replicas", c.ID, n))
	}
	b.State = BrokerReleased
	return Result{}, Changes{Brokers: []string{c.ID}}
}

func (s *State) cancelDecommission(c *CancelDecommission) (Result, Changes) {
	b, e := s.decommissioning(c.ID)
	if e != nil {
		return fail(e)
	}
	b.State = BrokerAlive
	return Result{}, Changes{Brokers: []string{c.ID}}
}

func (s *State) addReplica(c *AddReplica) (Result, Changes) {
	t, p, e := s.partition(c.Topic, c.Partition)
	if e != nil {
		return fail(e)
	}
	if _, ok := s.Brokers[c.Broker]; !ok {
		return fail(unknownBroker(c.Broker))
	}
	if p.Has(c.Broker) {
		return fail(errf(CodeConflict, "partition %s/%d already has a replica on %q", c.Topic, c.Partition, c.Broker))
	}
	if len(p.Replicas) >= t.Replication {
		return fail(errf(CodeConflict, "partition %s/%d already has its %d replicas", c.Topic, c.Partition, t.Replication))
	}
	p.Replicas = append(p.Replicas, c.Broker)
	slices.Sort(p.Replicas)
	return Result{}, Changes{Topics: []string{c.Topic}}
}
