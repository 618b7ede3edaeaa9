// Package brokerapi is the contract of the brokers' HTTP API: the request and reply
// types the broker serves (package broker), the managers and the SDK (clientlib) send.
// It imports nothing but the standard library, so that a program using the SDK links
// neither Fiber nor Raft.
//
// Every reply is JSON with "status":"success" plus the fields below, or "status":
// "failure" with "message" (and, when the replica that got a write is not the
// partition's leader, the leader).
//
//	POST   /replicas                                  CreateReplicaRequest → ReplicaStatus
//	GET    /replicas                                  → ListReplicasReply
//	GET    /replicas?brief=true                       → ListReplicasReply, brief (see there)
//	GET    /replicas/{topic}/{partition}              → ReplicaStatus
//	GET    /replicas/{topic}/{partition}?brief=true   → ReplicaStatus, brief (ListReplicasReply)
//	DELETE /replicas/{topic}/{partition}
//	POST   /replicas/{topic}/{partition}/members      Peer (add a voting member)
//	DELETE /replicas/{topic}/{partition}/members/{id}
//	POST   /produce                                   ProduceRequest → ProduceReply
//	POST   /produce?topic=&partition=&producer_id=&seq=  MIMEBatch body → ProduceReply
//	POST   /consumers                                 RegisterRequest → RegisterReply
//	POST   /consume                                   ConsumeRequest → ConsumeReply (JSON, or MIMEBatch on Accept: MIMEBatch)
//	GET    /size?topic=&partition=&consumer_id=       → SizeReply
//	GET    /replicas/{topic}/{partition}/messages?offset=&max=[&encoding=base64]  → ReadAtReply
//	PUT    /manager                                   ManagerAnnouncement → AnnounceReply
//	GET    /manager                                   → ManagerAnnouncement
//	GET    /healthz                                   → HealthReply
//
// Writes (produce, register, consume, membership) go to the partition's leader; any
// other replica answers 421 Misdirected Request with the leader in the failure body.
package brokerapi

import "github.com/quorumq/quorumq/internal/httpjson"

// Peer is one broker holding a replica.
type Peer struct {
	ID       string `json:"id"`
	RaftAddr string `json:"raft_addr"`
	HTTPAddr string `json:"http_addr,omitempty"`
}

// CreateReplicaRequest makes this broker a replica of a partition. Peers are all the
// replicas of a new partition (this broker included; every one is created with the same
// list), or the current members when this broker joins an existing partition.
type CreateReplicaRequest struct {
	Topic     string `json:"topic"`
	Partition *int   `json:"partition"`
	Peers     []Peer `json:"peers"`
	// Leader, of a new partition, is the member the managers chose to lead it: it
	// stands first in the group's first election, so the managers' record is right
	// without waiting for the election.
	Leader string `json:"leader,omitempty"`
	// New says the partition is being created: no member has run its group yet, so
	// each bootstraps it at once instead of first asking the others whether it runs
	// (election.Config.Fresh). The managers set it on a new topic's first request only,
	// never when a replica is re-created or moved; a broker ignores it for a replica
	// it already holds or reopens.
	New bool `json:"new,omitempty"`
	// RetentionMs and RetentionBytes are the topic's retention (0: none): the
	// partition's leader deletes the messages older than RetentionMs milliseconds, and
	// the oldest ones past the newest RetentionBytes bytes, on every replica. Sent
	// again to an existing replica, they replace its retention.
	RetentionMs    int64 `json:"retention_ms,omitempty"`
	RetentionBytes int64 `json:"retention_bytes,omitempty"`
}

// TransferRequest asks a partition's leader (POST /replicas/{topic}/{partition}/leader)
// to hand its leadership to member ID; it answers once ID leads. A broker that does
// not lead answers 421 naming the leader.
type TransferRequest struct {
	ID string `json:"id"`
}

// ReplicaStatus describes this broker's replica of a partition.
type ReplicaStatus struct {
	Topic     string `json:"topic"`
	Partition int    `json:"partition"`
	Leader    Peer   `json:"leader"` // zero while there is none
	IsLeader  bool   `json:"is_leader"`
	Members   []Peer `json:"members"`
	Applied   uint64 `json:"applied_index"`
	First     uint64 `json:"first_offset"` // retention deleted the messages before it
	Next      uint64 `json:"next_offset"`  // messages stored
	Bytes     uint64 `json:"bytes"`
	Consumers int    `json:"consumers"`
	// The Raft log this replica keeps: from LogFirst to LogLast, and the last snapshot.
	LogFirst      uint64 `json:"log_first_index"`
	LogLast       uint64 `json:"log_last_index"`
	SnapshotIndex uint64 `json:"snapshot_index"`
	// Damage lists the storage faults this replica has not got over yet: unrepaired
	// bodies, a recovery in progress. A replica with damage is no source to rebuild from.
	Damage []string `json:"damage,omitempty"`
}

// ListReplicasReply lists every replica this broker holds. Brief (?brief=true), each
// replica has only its topic, partition, leader and is_leader, and members where it
// leads: the managers' survey lists every replica of every broker every few seconds,
// and the full figures (the log's bounds, the snapshot) took a tenth of an idle
// broker's CPU with 6,000 replicas.
type ListReplicasReply struct {
	Replicas []ReplicaStatus `json:"replicas"`
}

// ProduceRequest appends Message, or the batch Messages, to a partition. With a
// ProducerID, Seq (required then) numbers the producer's batches on this partition: a
// retry with the same Seq is acknowledged with the offsets of the first attempt and not
// stored again; a Seq lower than the last one is refused, and so is one more than
// MaxSeqAhead past it. A producer must wait for each batch's reply before sending the
// next one (or use several producer ids).
type ProduceRequest struct {
	Topic      string   `json:"topic"`
	Partition  *int     `json:"partition"`
	ProducerID string   `json:"producer_id,omitempty"`
	Seq        *uint64  `json:"seq,omitempty"`
	Message    *string  `json:"message,omitempty"`
	Messages   []string `json:"messages,omitempty"`
}

// ProduceReply gives the offsets [Offset, Offset+Count) the batch has.
type ProduceReply struct {
	Offset    uint64 `json:"offset"`
	Count     int    `json:"count"`
	Duplicate bool   `json:"duplicate,omitempty"` // a retry of a batch already stored
}

// RegisterRequest registers a consumer of a partition (idempotent); it starts at offset 0.
type RegisterRequest struct {
	Topic      string `json:"topic"`
	Partition  *int   `json:"partition"`
	ConsumerID string `json:"consumer_id"`
}

// RegisterReply gives the consumer's offset.
type RegisterReply struct {
	Offset uint64 `json:"offset"`
}

// ConsumeRequest takes up to Max (default 1) of a consumer's next messages and advances
// its offset. Offset, when given, is the offset the consumer expects to read from: a retry
// after a lost reply names the same offset and gets the same messages.
type ConsumeRequest struct {
	Topic      string  `json:"topic"`
	Partition  *int    `json:"partition"`
	ConsumerID string  `json:"consumer_id"`
	Offset     *uint64 `json:"offset,omitempty"`
	Max        int     `json:"max,omitempty"`
}

// ConsumeReply holds the messages [Offset, Offset+len(Messages)). Message repeats the
// first one for seed-style single consumes. Next is the consumer's offset afterwards.
type ConsumeReply struct {
	Offset   uint64   `json:"offset"`
	Message  *string  `json:"message,omitempty"`
	Messages []string `json:"messages"`
	Next     uint64   `json:"next"`
	Left     uint64   `json:"left"` // messages still waiting after these
}

// SizeReply is how many messages are left for a consumer.
type SizeReply struct {
	Size uint64 `json:"size"`
}

// HealthReply is the /healthz reply.
type HealthReply struct {
	ID        string `json:"id"`
	RaftAddr  string `json:"raft_addr"`
	HTTPAddr  string `json:"http_addr"`
	Replicas  int    `json:"replicas"`
	Reopening int    `json:"reopening"` // replicas still to reopen after a restart
	// Storage faults found and not repaired yet, and replicas recovering from one (the
	// output of the broker's Consul check shows them).
	StorageFaults []string `json:"storage_faults,omitempty"`
	// Replicas halted because this binary does not know a command in their log: they
	// apply and serve nothing until the broker runs a binary that knows it.
	Halted []string `json:"halted,omitempty"`
}

// Failure is the body of every error reply: the shape every quorumq service shares,
// plus where writes go and where a consumer is.
type Failure struct {
	httpjson.Failure
	Leader *Peer `json:"leader,omitempty"` // on 421: where writes for the partition go
	// Offset, on the 409 of a consume whose offset is ahead of the consumer, is where
	// the consumer is: the managers learn it so without moving it.
	Offset *uint64 `json:"offset,omitempty"`
}

// The values of Failure.Outcome (the managers use the same words). The broker never
// answers not_applied for anything it may still apply: a 503 "leadership lost" for a
// batch that may still commit is unknown.
const (
	OutcomeNotApplied = httpjson.OutcomeNotApplied
	OutcomeUnknown    = httpjson.OutcomeUnknown
)

// CodeOffsetGone marks the 410 of a read below the partition's first offset:
// retention deleted those messages; Failure.EarliestOffset says where it starts.
const CodeOffsetGone = httpjson.CodeOffsetGone

// CodeEmpty marks the 404 of a consume that found no messages left (as opposed to an
// unknown partition or consumer).
const CodeEmpty = "empty"

// CodeDamaged (503) answers a read of messages this replica holds damaged on disk: they
// are not served until repaired (from another replica, or by rebuilding this one); the
// message says what was found and, when the repair is stuck, why.
const CodeDamaged = "damaged"
