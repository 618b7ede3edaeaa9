package meta

import (
	"encoding/json"
	"errors"
	"fmt"
)

// CmdType is the first byte of every encoded command.
type CmdType byte

// Command types. Never renumber: they are in every manager's Raft log.
const (
	TypeCreateTopic        CmdType = 1
	TypeAddPartitions      CmdType = 2
	TypeRegisterProducer   CmdType = 3
	TypeRegisterConsumer   CmdType = 4
	TypeBrokerUp           CmdType = 5
	TypeBrokerDown         CmdType = 6
	TypeMoveReplica        CmdType = 7
	TypeSetLeader          CmdType = 8
	TypeDecommission       CmdType = 9
	TypeReleaseBroker      CmdType = 10
	TypeAddReplica         CmdType = 11
	TypeCancelDecommission CmdType = 12
	TypeKeyed              CmdType = 13
	TypeConsumed           CmdType = 14
)

// Version is the payload version written after the type byte. A manager halts at a
// type or version it does not know (Check) rather than refuse it while the managers that
// know it apply it. A new field in a payload is a new version: JSON decoding would
// silently drop it on an older manager.
const Version byte = 1

// Command is a metadata change; each concrete type has its own CmdType.
type Command interface{ Type() CmdType }

// CreateTopic creates a topic; Apply places its partitions on the alive brokers.
// With retention it is written as version 2 (a manager that does not know retention
// refuses it rather than create the topic without); without, as version 1.
type CreateTopic struct {
	Name        string `json:"name"`
	Partitions  int    `json:"partitions"`
	Replication int    `json:"replication"`
	Retention
}

// Retention is how long and how much a topic keeps: each partition deletes its oldest
// messages once they are older than Ms milliseconds, or once the partition holds more
// than Bytes bytes without them. Zero is no limit.
type Retention struct {
	Ms    int64 `json:"retention_ms,omitempty"`
	Bytes int64 `json:"retention_bytes,omitempty"`
}

func (c CreateTopic) version() byte {
	if c.Retention != (Retention{}) {
		return 2
	}
	return Version
}

// AddPartitions grows a topic by Count partitions.
type AddPartitions struct {
	Topic string `json:"topic"`
	Count int    `json:"count"`
}

// RegisterProducer gives a new producer ID for a topic.
type RegisterProducer struct {
	Topic string `json:"topic"`
}

// RegisterConsumer gives a new consumer ID for a topic (or one of its partitions).
type RegisterConsumer struct {
	Topic     string `json:"topic"`
	Partition *int   `json:"partition,omitempty"`
}

// BrokerUp records a broker as alive at its addresses (first sight or return).
type BrokerUp struct {
	ID       string `json:"id"`
	Addr     string `json:"addr"`
	RaftAddr string `json:"raft_addr"`
}

// BrokerDown records a broker as dead.
type BrokerDown struct {
	ID string `json:"id"`
}

// MoveReplica records that a replica moved (it already exists on the new broker).
type MoveReplica Move

// SetLeader records the broker leading a partition's Raft group.
type SetLeader struct {
	Topic     string `json:"topic"`
	Partition int    `json:"partition"`
	Leader    string `json:"leader"`
}

// Decommission starts moving a broker's replicas away; it gets no new ones.
type Decommission struct {
	ID string `json:"id"`
}

// AddReplica records a new replica of an under-replicated partition (it already
// exists on the broker).
type AddReplica struct {
	Topic     string `json:"topic"`
	Partition int    `json:"partition"`
	Broker    string `json:"broker"`
}

// Keyed is a client's write under its Idempotency-Key (keys.go): Cmd, an encoded
// command, runs once per key. At is the clock of the manager that built it (Unix ms),
// which ages the key table without Apply reading a clock.
type Keyed struct {
	Key string `json:"key"`
	At  int64  `json:"at"`
	Cmd []byte `json:"cmd"`
}

// ReleaseBroker retires a decommissioning broker that holds no replicas.
type ReleaseBroker struct {
	ID string `json:"id"`
}

// CancelDecommission takes a decommissioning broker back: it is alive again
// and keeps the replicas it still holds.
type CancelDecommission struct {
	ID string `json:"id"`
}

func (CreateTopic) Type() CmdType        { return TypeCreateTopic }
func (AddPartitions) Type() CmdType      { return TypeAddPartitions }
func (RegisterProducer) Type() CmdType   { return TypeRegisterProducer }
func (RegisterConsumer) Type() CmdType   { return TypeRegisterConsumer }
func (BrokerUp) Type() CmdType           { return TypeBrokerUp }
func (BrokerDown) Type() CmdType         { return TypeBrokerDown }
func (MoveReplica) Type() CmdType        { return TypeMoveReplica }
func (SetLeader) Type() CmdType          { return TypeSetLeader }
func (Decommission) Type() CmdType       { return TypeDecommission }
func (ReleaseBroker) Type() CmdType      { return TypeReleaseBroker }
func (AddReplica) Type() CmdType         { return TypeAddReplica }
func (CancelDecommission) Type() CmdType { return TypeCancelDecommission }
func (Keyed) Type() CmdType              { return TypeKeyed }
func (Consumed) Type() CmdType           { return TypeConsumed }

// Encode writes a command as type byte, version byte, JSON payload.
func Encode(c Command) []byte {
	payload, err := json.Marshal(c)
	if err != nil {
		panic(fmt.Sprintf("meta: encode %T: %v", c, err)) // only plain fields: cannot fail
	}
	v := Version
	if vc, ok := c.(interface{ version() byte }); ok {
		v = vc.version()
	}
	return append([]byte{byte(c.Type()), v}, payload...)
}

// maxVersion is the newest version of each command type that has more than one.
var maxVersion = map[CmdType]byte{TypeCreateTopic: 2}

var newCommand = map[CmdType]func() Command{
	TypeCreateTopic:        func() Command { return &CreateTopic{} },
	TypeAddPartitions:      func() Command { return &AddPartitions{} },
	TypeRegisterProducer:   func() Command { return &RegisterProducer{} },
	TypeRegisterConsumer:   func() Command { return &RegisterConsumer{} },
	TypeBrokerUp:           func() Command { return &BrokerUp{} },
	TypeBrokerDown:         func() Command { return &BrokerDown{} },
	TypeMoveReplica:        func() Command { return &MoveReplica{} },
	TypeSetLeader:          func() Command { return &SetLeader{} },
	TypeDecommission:       func() Command { return &Decommission{} },
	TypeReleaseBroker:      func() Command { return &ReleaseBroker{} },
	TypeAddReplica:         func() Command { return &AddReplica{} },
	TypeCancelDecommission: func() Command { return &CancelDecommission{} },
	TypeKeyed:              func() Command { return &Keyed{} },
	TypeConsumed:           func() Command { return &Consumed{} },
}

// Decode reads an encoded command; the result is a pointer to the concrete type.
func Decode(b []byte) (Command, error) {
	if len(b) < 2 {
		return nil, errors.New("meta: command too short")
	}
	mk, ok := newCommand[CmdType(b[0])]
	if !ok {
		return nil, fmt.Errorf("meta: unknown command type %d", b[0])
	}
	if !knownVersion(CmdType(b[0]), b[1]) {
		return nil, fmt.Errorf("meta: command type %d has unknown version %d", b[0], b[1])
	}
	c := mk()
	if err := json.Unmarshal(b[2:], c); err != nil {
		return nil, fmt.Errorf("meta: decode command type %d: %w", b[0], err)
	}
	return c, nil
}

// knownVersion says whether this binary decodes version v of command type t.
func knownVersion(t CmdType, v byte) bool {
	return v >= Version && v <= max(Version, maxVersion[t])
}

// Check says whether this binary knows cmd's type and version, and those of the
// command a Keyed one carries. A command too short or too garbled to tell is malformed
// rather than newer: Apply refuses it the same way on every manager.
func Check(cmd []byte) error {
	if len(cmd) < 2 {
		return nil
	}
	if _, ok := newCommand[CmdType(cmd[0])]; !ok {
		return fmt.Errorf("meta: command type %d is unknown to this binary", cmd[0])
	}
	if !knownVersion(CmdType(cmd[0]), cmd[1]) {
		return fmt.Errorf("meta: command type %d has version %d, unknown to this binary", cmd[0], cmd[1])
	}
	if CmdType(cmd[0]) == TypeKeyed {
		var k Keyed
		if json.Unmarshal(cmd[2:], &k) == nil {
			return Check(k.Cmd)
		}
	}
	return nil
}

// Code classifies a failed command so that the HTTP layer can pick a status.
type Code string

const (
	CodeInvalid          Code = "invalid" // the request is malformed or out of range
	CodeUnknownTopic     Code = "unknown_topic"
	CodeUnknownPartition Code = "unknown_partition"
	CodeUnknownBroker    Code = "unknown_broker"
	CodeTopicExists      Code = "topic_exists"
	CodeConflict         Code = "conflict"    // it contradicts the current placement
	CodeUnavailable      Code = "unavailable" // not enough brokers right now
	CodeKeyReused        Code = "key_reused"  // an Idempotency-Key sent again with another request
)

// Error is a command the state machine refused. It travels inside the Result, so every
// manager sees the same refusal.
type Error struct {
	Code Code   `json:"code"`
	Msg  string `json:"message"`
}

func (e *Error) Error() string { return e.Msg }

func errf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Msg: fmt.Sprintf(format, args...)}
}

// Result is what Apply answers for one command.
type Result struct {
	Err   *Error `json:"err,omitempty"`
	Topic *Topic `json:"topic,omitempty"` // CreateTopic, AddPartitions
	ID    uint64 `json:"id,omitempty"`    // RegisterProducer, RegisterConsumer
	// Replayed marks the first result of a Keyed command, answered again.
	Replayed bool `json:"replayed,omitempty"`
}

// EncodeResult is the []byte form Apply hands back through Raft.
func EncodeResult(r Result) []byte {
	b, err := json.Marshal(r)
	if err != nil {
		panic(fmt.Sprintf("meta: encode result: %v", err))
	}
	return b
}

// DecodeResult reads a Result; a refused command comes back as its *Error.
func DecodeResult(b []byte) (Result, error) {
	var r Result
	if err := json.Unmarshal(b, &r); err != nil {
		return Result{}, fmt.Errorf("meta: decode result: %w", err)
	}
	if r.Err != nil {
		return r, r.Err
	}
	return r, nil
}
