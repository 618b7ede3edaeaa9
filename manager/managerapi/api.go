// Package managerapi is the contract of the managers' public REST API: the request
// and reply types the managers serve (package manager) and the SDK (clientlib) and the
// CLI send, described by the OpenAPI document the managers serve at GET /openapi.json.
// It imports nothing but the standard library, so that a program using the SDK links
// neither Fiber nor Raft nor PostgreSQL.
//
// Every reply carries "status": "success" or, on failure, "status": "failure" with
// "message" and a machine-readable "code".
package managerapi

import "github.com/quorumq/quorumq/internal/httpjson"

// Reply is embedded in every successful reply.
type Reply struct {
	Status string `json:"status"`
}

// Success is the Reply of every successful request.
var Success = Reply{Status: "success"}

// Failure is the body of every failed request, the shape every quorumq service shares.
// Outcome is on every failure of a write endpoint (POST /topics,
// /topics/{name}/partitions, /producer/register, /consumer/register,
// /producer/produce, DELETE /brokers/{id}, and GET /consumer/consume, which moves the
// consumer): OutcomeNotApplied when the request certainly changed nothing and never
// will, OutcomeUnknown when it may have taken effect, now or later (a 503 after the
// command may have reached the Raft log is unknown). Retry an unknown outcome with the
// same Idempotency-Key (or seq), which answers the first outcome.
type Failure = httpjson.Failure

// The values of Failure.Outcome.
const (
	OutcomeNotApplied = httpjson.OutcomeNotApplied
	OutcomeUnknown    = httpjson.OutcomeUnknown
)

// Failure codes, for clients that act on the kind of failure.
const (
	CodeOffsetGone      = httpjson.CodeOffsetGone // 410: below the first offset kept; see Failure.EarliestOffset
	CodeInvalid         = "invalid"
	CodeUnknownTopic    = "unknown_topic"
	CodeUnknownProducer = "unknown_producer"
	CodeUnknownConsumer = "unknown_consumer"
	CodeUnknownBroker   = "unknown_broker"
	CodeTopicExists     = "topic_exists"
	CodeConflict        = "conflict"
	CodeNoMessage       = "no_message"
	CodeUnavailable     = "unavailable"
	CodeNotFound        = "not_found"
	CodeKeyReused       = "key_reused" // an Idempotency-Key sent again with another request
)

// MessageReply answers DELETE /brokers/{id} and POST /brokers/{id}/cancel-decommission
// (what happens next, for people).
type MessageReply struct {
	Reply
	Message string `json:"message"`
}

// CreateTopicRequest is the body of POST /topics; zero counts take the managers' defaults.
type CreateTopicRequest struct {
	Name        string `json:"name"`
	Partitions  int    `json:"partitions,omitempty"`
	Replication int    `json:"replication,omitempty"`
	// RetentionMs and RetentionBytes bound what each partition keeps: its oldest
	// messages are deleted once older than RetentionMs milliseconds, or once the
	// partition holds more than RetentionBytes bytes without them. Absent or 0: kept
	// forever.
	RetentionMs    int64 `json:"retention_ms,omitempty"`
	RetentionBytes int64 `json:"retention_bytes,omitempty"`
}

// AddPartitionsRequest is the body of POST /topics/{name}/partitions: grow by Count.
type AddPartitionsRequest struct {
	Count int `json:"count"`
}

// PartitionInfo is one partition of a topic.
type PartitionInfo struct {
	Partition int      `json:"partition"`
	Leader    string   `json:"leader"`
	Replicas  []string `json:"replicas"`
}

// TopicInfo describes a topic and where it lives.
type TopicInfo struct {
	Name           string          `json:"name"`
	Replication    int             `json:"replication"`
	Partitions     []PartitionInfo `json:"partitions"`
	RetentionMs    int64           `json:"retention_ms,omitempty"`
	RetentionBytes int64           `json:"retention_bytes,omitempty"`
}

// TopicReply answers POST /topics, POST /topics/{name}/partitions and GET /topics/{name}.
type TopicReply struct {
	Reply
	Message string    `json:"message,omitempty"`
	Topic   TopicInfo `json:"topic"`
}

// TopicsReply answers GET /topics.
type TopicsReply struct {
	Reply
	Topics []string `json:"topics"`
}

// RegisterRequest is the body of POST /producer/register and POST /consumer/register;
// Partition (consumers only) pins the consumer to one partition.
type RegisterRequest struct {
	Topic     string `json:"topic"`
	Partition *int   `json:"partition,omitempty"`
}

// ProducerReply answers POST /producer/register.
type ProducerReply struct {
	Reply
	ProducerID uint64 `json:"producer_id"`
}

// ConsumerReply answers POST /consumer/register.
type ConsumerReply struct {
	Reply
	ConsumerID uint64 `json:"consumer_id"`
}

// ProduceRequest is the body of POST /producer/produce: one Message (seed form) or a
// batch of Messages. Without Partition the message goes by Key hash, else round robin.
// Seq, with the producer id, makes a retry idempotent.
type ProduceRequest struct {
	Topic      string   `json:"topic"`
	ProducerID uint64   `json:"producer_id"`
	Message    *string  `json:"message,omitempty"`
	Messages   []string `json:"messages,omitempty"`
	Partition  *int     `json:"partition,omitempty"`
	Key        string   `json:"key,omitempty"`
	Seq        *uint64  `json:"seq,omitempty"`
}

// ProduceReply says where the (first) message was stored.
type ProduceReply struct {
	Reply
	Partition int    `json:"partition"`
	Offset    uint64 `json:"offset"`
	Count     int    `json:"count"`
}

// ConsumeReply answers GET /consumer/consume: one "message", or "messages" when max>1.
type ConsumeReply struct {
	Reply
	Message    *string  `json:"message,omitempty"`
	Messages   []string `json:"messages,omitempty"`
	Partition  int      `json:"partition"`
	Offset     uint64   `json:"offset"`
	NextOffset uint64   `json:"next_offset"`
}

// MessagesReply answers GET /topics/{name}/partitions/{partition}/messages: the
// messages [Offset, NextOffset), read by offset from one replica (Broker) without moving
// any consumer. A replica that is behind may hold fewer than the leader: fewer messages,
// or none, do not mean the partition ends there.
type MessagesReply struct {
	Reply
	Partition  int      `json:"partition"`
	Offset     uint64   `json:"offset"`
	NextOffset uint64   `json:"next_offset"`
	Messages   []string `json:"messages"`
	Broker     string   `json:"broker"`
}

// SizeReply answers GET /size: messages left for the consumer.
type SizeReply struct {
	Reply
	Size uint64 `json:"size"`
}

// BrokersReply answers GET /brokers.
type BrokersReply struct {
	Reply
	Brokers []BrokerInfo `json:"brokers"`
	// MovesBy is the write manager whose mover counted the brokers' moves in flight,
	// done and failed (since it took over); empty when a read manager answered, whose
	// counts besides Pending are zero: ask the write manager (GET /managers names it).
	MovesBy string `json:"moves_by,omitempty"`
}

// BrokerInfo is one broker the managers know, with the replicas and partition leaders
// it holds, and the replica moves from and to it. State is alive, dead,
// decommissioning (its replicas move away) or released (decommissioned and empty).
type BrokerInfo struct {
	ID       string     `json:"id"`
	Addr     string     `json:"addr"`      // HTTP API host:port
	RaftAddr string     `json:"raft_addr"` // shared Raft listener host:port
	State    string     `json:"state"`
	Replicas int        `json:"replicas"`
	Leaders  int        `json:"leaders"`
	Moves    MoveCounts `json:"moves"`
}

// MoveCounts are the replica moves from and to one broker. Pending are the replicas
// of a dead or decommissioning broker not moving yet; InFlight, Done and Failed
// (attempts: a failed move is retried with backoff) are the write manager's counts
// since it took over.
type MoveCounts struct {
	Pending  int `json:"pending"`
	InFlight int `json:"in_flight"`
	Done     int `json:"done"`
	Failed   int `json:"failed"`
}

// ManagerInfo is one member of the managers' Raft group.
type ManagerInfo struct {
	ID       string `json:"id"`
	RaftAddr string `json:"raft_addr"`
	HTTPAddr string `json:"http_addr,omitempty"`
	Leader   bool   `json:"leader"`
}

// ManagersReply answers GET /managers: WriteManager is the Raft leader's ID.
type ManagersReply struct {
	Reply
	WriteManager string        `json:"write_manager"`
	Managers     []ManagerInfo `json:"managers"`
}

// HealthReply answers GET /healthz.
type HealthReply struct {
	Reply
	ID           string `json:"id"`
	Leader       bool   `json:"leader"`
	AppliedIndex uint64 `json:"applied_index"`
	// Recovering is set while this manager recovers from a storage fault: what was found
	// and what it waits for (Consul keeps it as the check's output).
	Recovering string `json:"recovering,omitempty"`
	// Message says why a halted manager stopped applying the log (status "failure",
	// HTTP 503): it needs a binary that knows the commands the others write.
	Message string `json:"message,omitempty"`
}
