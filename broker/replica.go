package broker

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/quorumq/quorumq/broker/brokerapi"
	"github.com/quorumq/quorumq/broker/internal/store"
	"github.com/quorumq/quorumq/broker/partition"
	"github.com/quorumq/quorumq/election"
)

// replica is this broker's member of one partition's Raft group.
type replica struct {
	topic string
	part  int
	group string
	first string    // the member the managers chose to lead first, if any
	ret   retention // guarded by mu (retention.go)
	node  *election.Node
	fsm   *partition.FSM
	log   raft.LogStore
	store *store.Partition // for repairs (repair.go)

	mu    sync.Mutex
	peers map[string]brokerapi.Peer // by id, for the HTTP address of whoever leads

	queueOnce sync.Once
	queue     chan *produceReq // made by produceQueue
	slots     chan struct{}
	pumpMu    sync.Mutex      // guards next (groupcommit.go)
	next      *produceReq     // taken from queue but left for the next entry (too big for this one)
	ctx       context.Context // done once the replica closes: its entries' outcome is unknown
	cancel    context.CancelFunc
	closing   sync.RWMutex // read-held while an entry is proposed; close takes it to wait for them
}

func groupName(topic string, part int) string { return fmt.Sprintf("p/%s/%d", topic, part) }

// replicaDesc is what the broker records about a replica to reopen it after a restart.
type replicaDesc struct {
	Topic     string           `json:"topic"`
	Partition int              `json:"partition"`
	Peers     []brokerapi.Peer `json:"peers"`
	Leader    string           `json:"-"` // CreateReplicaRequest.Leader: only for the first election
	New       bool             `json:"-"` // CreateReplicaRequest.New: only for the first open
	// The topic's retention (brokerapi.CreateReplicaRequest), enforced while leading.
	RetentionMs    int64 `json:"retention_ms,omitempty"`
	RetentionBytes int64 `json:"retention_bytes,omitempty"`
}

// PartitionTiming is IdleTiming with frequent snapshots: a partition's snapshot is its
// small state only (broker/internal/store), so taking one is cheap and lets the Raft log, which
// holds a second copy of every message, be truncated early. Entries carry up to
// maxEntryBytes, so the log is bounded in entries, not bytes: 256 + 256 entries of
// 1 KiB messages is half a MiB, of full group commits up to 2 GiB (measured with 16
// producers of 100-message batches: 1,024 + 1,024 let the log grow past the message
// store). The price of a short log: a follower that falls further behind than
// TrailingLogs catches up by snapshot, which streams the whole partition.
//
// Heartbeats and the lease are IdleTiming's: a dead broker's partitions are taken over
// through the broker's pings (nudge.go), not after HeartbeatTimeout, and a snapshot is
// asked for when the entries are applied (SnapshotGap), so that no snapshot timer fires
// every few seconds in every idle group. Measured, 1,000 idle partitions on 3 brokers
// with TLS (`quorumq bench idle`, docs/benchmarks.md "Raft per partition"): a 3 s
// HeartbeatTimeout with a 1 s lease cost 10.4–13.3 % of a core per broker, 9 s with a
// 3 s lease and no snapshot timer 8.6–9.1 %, 7.4–7.6 % with one core per broker; but a
// first election that fails waits for the lease to be retried, so a cold restart of all
// brokers takes longer (`quorumq bench partitions`: 5.8 s with the 1 s lease, 8.5–9.0 s
// with 3 s). The lease is now 4.5 s (see IdleTiming).
func PartitionTiming() election.Timing {
	t := election.IdleTiming()
	t.SnapshotThreshold = 256
	t.TrailingLogs = 256
	t.SnapshotGap = 2 * time.Second // snapshot at 256 entries, one per 2 s at most
	t.SnapshotBytes = 32 << 20
	return t
}

// openReplica opens the replica d describes; rebuilt says why its data was just dropped
// (nil normally): it then takes no part in elections until caught up.
func (b *Broker) openReplica(ctx context.Context, d replicaDesc, rebuilt error) (*replica, error) {
	group := groupName(d.Topic, d.Partition)
	g, fsm, err := b.openState(group)
	if errors.Is(err, store.ErrDamaged) {
		rebuilt = err
		g, fsm, err = b.rebuild(ctx, d, err)
	}
	if err != nil {
		return nil, err
	}
	r := &replica{topic: d.Topic, part: d.Partition, group: group, first: d.Leader, ret: retention{d.RetentionMs, d.RetentionBytes}, fsm: fsm, log: g.LogStore(), store: g.Partition(), peers: map[string]brokerapi.Peer{},
		slots: make(chan struct{}, inFlight)}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	for _, p := range d.Peers {
		r.peers[p.ID] = p
	}
	r.node, err = election.Open(ctx, election.Config{
		Group: group, ID: b.cfg.ID, Mux: b.mux, FSM: fsm, Timing: b.cfg.Timing, Peers: electionPeers(d.Peers),
		LogStore: g.LogStore(), StableStore: g.StableStore(), SnapshotStore: g.SnapshotStore(),
		Fresh: d.New && rebuilt == nil, Rebuilt: rebuilt, Logger: b.log,
	})
	if err != nil {
		return nil, err
	}
	b.hastenElection(r)
	return r, nil
}

func electionPeers(ps []brokerapi.Peer) []election.Peer {
	out := make([]election.Peer, 0, len(ps))
	for _, p := range ps {
		out = append(out, election.Peer{ID: p.ID, Addr: p.RaftAddr})
	}
	return out
}

func (r *replica) close() error {
	r.cancel()
	r.closing.Lock() // every entry being proposed has given up (its ctx is r.ctx's)
	r.closing.Unlock()
	r.store.Drop() // what raft applies from here on is replayed from the log at the next open
	return r.node.Close()
}

func (r *replica) desc() replicaDesc {
	r.mu.Lock()
	defer r.mu.Unlock()
	d := replicaDesc{Topic: r.topic, Partition: r.part, RetentionMs: r.ret.ms, RetentionBytes: r.ret.bytes}
	for _, p := range r.peers {
		d.Peers = append(d.Peers, p)
	}
	return d
}

func (r *replica) rememberPeer(p brokerapi.Peer) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if old, ok := r.peers[p.ID]; ok && p.HTTPAddr == "" {
		p.HTTPAddr = old.HTTPAddr
	}
	r.peers[p.ID] = p
}

func (r *replica) peer(id string) (brokerapi.Peer, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	p, ok := r.peers[id]
	return p, ok
}

func (r *replica) register(ctx context.Context, consumer string) (partition.RegisterResult, error) {
	out, err := r.node.Apply(ctx, partition.EncodeRegister(consumer))
	if err != nil {
		return partition.RegisterResult{}, err
	}
	return partition.DecodeRegisterResult(out)
}

// consume advances the consumer through Raft, then reads the messages it was given
// from the local store (they are committed and never change). If leadership moved while
// the command was forwarded, this replica may not have applied it yet: the caller gets
// an error and retries with the same expected offset, which returns the same messages.
func (r *replica) consume(ctx context.Context, req partition.ConsumeRequest) (partition.ConsumeResult, [][]byte, error) {
	out, err := r.node.Apply(ctx, partition.EncodeConsume(req))
	if err != nil {
		return partition.ConsumeResult{}, nil, err
	}
	res, err := partition.DecodeConsumeResult(out)
	if err != nil || res.Status != partition.StatusOK {
		return res, nil, err
	}
	if _, next, _, _ := r.fsm.Info(); next < res.From+uint64(res.Count) {
		return res, nil, errNotApplied
	}
	msgs, err := r.fsm.Messages(res.From, res.Count)
	if errors.As(err, new(*partition.GoneError)) {
		// Retention deleted them since the consume was applied: the retry (same offset)
		// goes on from the partition's new start.
		return res, nil, errNotApplied
	}
	return res, msgs, err
}

var errNotApplied = errors.New("this replica has not applied the consume yet (leadership moved); retry with the same offset")

func (r *replica) status(ctx context.Context) brokerapi.ReplicaStatus {
	applied, next, bytes, consumers := r.fsm.Info()
	st := brokerapi.ReplicaStatus{Topic: r.topic, Partition: r.part, IsLeader: r.node.IsLeader(),
		Applied: applied, Next: next, Bytes: bytes, Consumers: consumers}
	st.First, _ = r.fsm.Bounds()
	st.LogFirst, _ = r.log.FirstIndex()
	st.LogLast, _ = r.log.LastIndex()
	st.SnapshotIndex, _ = strconv.ParseUint(r.node.Raft().Stats()["last_snapshot_index"], 10, 64)
	r.addLeadership(ctx, &st, false)
	return st
}

// brief is the replica's entry in a brief listing (brokerapi.ListReplicasReply).
func (r *replica) brief(ctx context.Context) brokerapi.ReplicaStatus {
	st := brokerapi.ReplicaStatus{Topic: r.topic, Partition: r.part, IsLeader: r.node.IsLeader()}
	r.addLeadership(ctx, &st, true)
	return st
}

// addLeadership fills in the leader and the members (only where st leads if
// leaderOnly).
func (r *replica) addLeadership(ctx context.Context, st *brokerapi.ReplicaStatus, leaderOnly bool) {
	if l := r.node.Leader(); l.ID != "" {
		st.Leader = r.fullPeer(election.Peer(l))
	}
	if leaderOnly && !st.IsLeader {
		return
	}
	if members, err := r.node.Members(ctx); err == nil {
		for _, m := range members {
			st.Members = append(st.Members, r.fullPeer(m))
		}
	}
}

func (r *replica) fullPeer(p election.Peer) brokerapi.Peer {
	if known, ok := r.peer(p.ID); ok && known.HTTPAddr != "" {
		return brokerapi.Peer{ID: p.ID, RaftAddr: p.Addr, HTTPAddr: known.HTTPAddr}
	}
	return brokerapi.Peer{ID: p.ID, RaftAddr: p.Addr}
}
