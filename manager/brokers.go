package manager

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/quorumq/quorumq/broker/brokerapi"
	"github.com/quorumq/quorumq/internal/brokerclient"
	"github.com/quorumq/quorumq/manager/managerapi"
	"github.com/quorumq/quorumq/manager/meta"
)

// brokerClient speaks the brokers' HTTP API (package broker's api.go types) through
// brokerclient's one request function, with the failures the routing tells apart.
type brokerClient struct {
	http *brokerclient.Client
	// leaderSeen is told when a partition's leader turned out to be another broker than
	// the metadata names.
	leaderSeen func(p meta.Partition, id string)

	mu    sync.Mutex
	opens map[string]chan struct{} // per broker id: replica opens in flight (openSlots)
}

// openSlots bounds the replica opens the managers ask of one broker at once. Creating
// 2,000 topics put 2,800 opens in flight at a time, each on a TLS connection of its own:
// the write manager's heap grew to 3.7 GB (1.2 GB of it connection buffers) and the
// brokers spent their cores on handshakes, while a few at a time keep a broker's disk
// and Raft busy. Not fewer: four clients creating 5-partition topics on five brokers
// ask 12 opens of each broker at once, and with 8 slots a third of them waited for
// another open to end (2,000 such topics: create p50 154 ms with 8, 132 ms with 16,
// medians of three runs); the opens a broker has at once share its commits.
const openSlots = 16

// maxConnsPerBroker bounds the manager's connections to one broker, whatever the load:
// a request beyond it waits for a connection instead of dialing one more.
const maxConnsPerBroker = 128

func newBrokerClient(leaderSeen func(p meta.Partition, id string)) *brokerClient {
	c := brokerclient.New()
	if tr, ok := c.HTTP.Transport.(*http.Transport); ok {
		tr.MaxConnsPerHost = maxConnsPerBroker
	}
	return &brokerClient{http: c, leaderSeen: leaderSeen, opens: map[string]chan struct{}{}}
}

// openSlot waits for one of b's replica-open slots; release gives it back.
func (bc *brokerClient) openSlot(ctx context.Context, b meta.Broker) (release func(), err error) {
	bc.mu.Lock()
	slots, ok := bc.opens[b.ID]
	if !ok {
		slots = make(chan struct{}, openSlots)
		bc.opens[b.ID] = slots
	}
	bc.mu.Unlock()
	select {
	case slots <- struct{}{}:
		return func() { <-slots }, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// brokerError is a failure reply of a broker, or no reply at all.
type brokerError struct {
	broker      string
	status      int
	msg         string
	code        string  // brokerapi.Failure.Code
	leader      string  // the partition leader the broker named, when it is not the leader
	unreachable bool    // no connection: the request never reached the broker
	outcome     string  // brokerapi.Failure.Outcome: whether a write may have been applied
	offset      *uint64 // brokerapi.Failure.Offset: where the consumer stands
	earliest    *uint64 // brokerapi.Failure.EarliestOffset: where the partition starts (410)
}

func (e *brokerError) Error() string {
	return fmt.Sprintf("broker %s: %s (HTTP %d)", e.broker, e.msg, e.status)
}

// clientFault reports whether the broker refused the request for what the client sent
// (a message too large, a stale sequence number): the client gets that refusal as it is.
// Everything else is a state of the cluster that passes — no replica of a partition
// the metadata places there (being created, moved, or reopened after a restart), a
// consumer the partition has not registered yet, no leader, not the leader, no broker
// reachable — and the client gets 503, which it retries. A 404 in particular is never
// the client's: the manager has checked the topic, producer and consumer before asking.
func (e *brokerError) clientFault() bool {
	switch e.status {
	case http.StatusNotFound, http.StatusMisdirectedRequest:
		return false
	}
	return e.status >= 400 && e.status < 500
}

var errNoBroker = fail(http.StatusServiceUnavailable, managerapi.CodeUnavailable, "no reachable broker holds this partition")

// call sends one JSON request to a broker and decodes its reply into out.
func (bc *brokerClient) call(ctx context.Context, b meta.Broker, method, path string, in, out any) error {
	err := bc.http.Do(ctx, method, b.Addr, path, in, out)
	if err == nil {
		return nil
	}
	var fe *brokerclient.Error
	if errors.As(err, &fe) {
		e := &brokerError{broker: b.ID, status: fe.Code, msg: fe.Message, code: fe.Reason, outcome: fe.Outcome, offset: fe.Offset, earliest: fe.Earliest}
		if e.msg == "" {
			e.msg = http.StatusText(fe.Code)
		}
		if fe.Leader != nil {
			e.leader = fe.Leader.ID
		}
		return e
	}
	var op *net.OpError
	return &brokerError{broker: b.ID, status: http.StatusBadGateway, msg: err.Error(),
		unreachable: errors.As(err, &op) && op.Op == "dial"}
}

// replicaOrder lists p's replicas to try: the broker the metadata names as leader
// first, then the others.
func replicaOrder(p meta.Partition) []string {
	order := []string{p.Leader}
	for _, r := range p.Replicas {
		if r != p.Leader {
			order = append(order, r)
		}
	}
	return order
}

// retryElsewhere reports whether another replica (or the same one a moment later) may
// answer what this one could not, without the risk of doing the work twice: the broker
// was unreachable, is not the leader, has no leader yet, or does not hold the partition.
func retryElsewhere(err error) bool {
	var be *brokerError
	if !errors.As(err, &be) {
		return false
	}
	switch be.status {
	case http.StatusMisdirectedRequest:
		return true
	case http.StatusServiceUnavailable:
		return strings.Contains(be.msg, "no leader")
	case http.StatusNotFound:
		return strings.Contains(be.msg, "no replica")
	}
	return be.unreachable
}

// leaderWait bounds how long a request waits for a partition to elect a leader (a new
// partition, or one whose leader just died).
const leaderWait = 5 * time.Second

// readAttempt bounds one replica's answer to a read-only call before the next replica
// is asked: a replica still catching up must not hold the request. A follower may need
// a partition's CommitTimeout (2 s) and more to learn the commit index.
const readAttempt = 4 * time.Second

// onLeader runs op against the partition's leader: the broker the metadata names,
// then whoever a broker points to, then the other replicas; while the partition has no
// leader, it tries again for up to leaderWait.
func (bc *brokerClient) onLeader(ctx context.Context, view map[string]meta.Broker, p meta.Partition, op func(b meta.Broker) error) error {
	deadline := time.Now().Add(leaderWait)
	for {
		err := bc.onReplicas(ctx, view, replicaOrder(p), false, func(b meta.Broker) error {
			err := op(b)
			if err == nil && b.ID != p.Leader {
				bc.leaderSeen(p, b.ID)
			}
			return err
		})
		if !retryElsewhere(err) || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// onReplicas tries op on the brokers in order (and on leaders they name) until one
// answers. A readOnly op may also move on after any failure of the broker itself (a
// timeout, a 5xx): asking again cannot do anything twice.
func (bc *brokerClient) onReplicas(ctx context.Context, view map[string]meta.Broker, order []string, readOnly bool, op func(b meta.Broker) error) error {
	tried := map[string]bool{}
	var last error = errNoBroker
	for len(order) > 0 && ctx.Err() == nil {
		id := order[0]
		order = order[1:]
		b, ok := view[id]
		if !ok || tried[id] || b.State == meta.BrokerDead {
			continue
		}
		tried[id] = true
		err := op(b)
		var be *brokerError
		if !retryElsewhere(err) && !(readOnly && errors.As(err, &be) && be.status >= 500) {
			return err
		}
		last = err
		if errors.As(err, &be) && be.leader != "" && !tried[be.leader] {
			order = append([]string{be.leader}, order...)
		}
	}
	return last
}

func replicaPath(p meta.Partition) string {
	return "/replicas/" + url.PathEscape(p.Topic) + "/" + strconv.Itoa(p.Index)
}

func (bc *brokerClient) produce(ctx context.Context, view map[string]meta.Broker, p meta.Partition,
	producer string, seq *uint64, msgs []string) (uint64, error) {
	req := brokerapi.ProduceRequest{Topic: p.Topic, Partition: &p.Index, Messages: msgs}
	if seq != nil {
		req.ProducerID, req.Seq = producer, seq
	}
	var reply brokerapi.ProduceReply
	err := bc.onLeader(ctx, view, p, func(b meta.Broker) error {
		return bc.call(ctx, b, http.MethodPost, "/produce", req, &reply)
	})
	return reply.Offset, err
}

// notRegistered and nothingLeft tell the broker's two 404s of consume and size apart.
func notRegistered(err error) bool {
	var be *brokerError
	return errors.As(err, &be) && be.status == http.StatusNotFound && strings.Contains(be.msg, "not registered")
}

func nothingLeft(err error) bool {
	var be *brokerError
	return errors.As(err, &be) && be.code == brokerapi.CodeEmpty
}

// registerConsumer registers consumer on p (idempotent); it starts at offset 0.
func (bc *brokerClient) registerConsumer(ctx context.Context, view map[string]meta.Broker, p meta.Partition, consumer string) error {
	return bc.onLeader(ctx, view, p, func(b meta.Broker) error {
		return bc.call(ctx, b, http.MethodPost, "/consumers",
			brokerapi.RegisterRequest{Topic: p.Topic, Partition: &p.Index, ConsumerID: consumer}, nil)
	})
}

// withConsumer runs op and, when the partition does not know the consumer yet (it
// registered before the partition existed, or its registration did not reach the
// partition), registers it there and runs op again.
func (bc *brokerClient) withConsumer(ctx context.Context, view map[string]meta.Broker, p meta.Partition, consumer string, op func() error) error {
	err := op()
	if !notRegistered(err) {
		return err
	}
	if err := bc.registerConsumer(ctx, view, p, consumer); err != nil {
		return err
	}
	return op()
}

func (bc *brokerClient) consume(ctx context.Context, view map[string]meta.Broker, p meta.Partition,
	consumer string, offset *uint64, max int) (brokerapi.ConsumeReply, error) {
	var reply brokerapi.ConsumeReply
	req := brokerapi.ConsumeRequest{Topic: p.Topic, Partition: &p.Index, ConsumerID: consumer, Offset: offset, Max: max}
	err := bc.withConsumer(ctx, view, p, consumer, func() error {
		return bc.onLeader(ctx, view, p, func(b meta.Broker) error {
			return bc.call(ctx, b, http.MethodPost, "/consume", req, &reply)
		})
	})
	if nothingLeft(err) {
		return brokerapi.ConsumeReply{}, nil
	}
	return reply, err
}

// position asks p where consumer stands, without moving it: the partition refuses a
// consume from an offset past any message, naming the consumer's offset.
func (bc *brokerClient) position(ctx context.Context, view map[string]meta.Broker, p meta.Partition, consumer string) (uint64, error) {
	beyond := uint64(math.MaxInt64)
	_, err := bc.consume(ctx, view, p, consumer, &beyond, 1)
	var be *brokerError
	switch {
	case errors.As(err, &be) && be.status == http.StatusConflict && be.offset != nil:
		return *be.offset, nil
	case err == nil:
		return 0, fmt.Errorf("partition %s did not refuse a consume from offset %d", p.GroupName(), beyond)
	}
	return 0, err
}

// size asks the partition's leader, then the other replicas. Any replica could answer
// (after a read barrier), but a follower learns the commit index only with the leader's
// next AppendEntries, and partitions run with a long CommitTimeout: measured on three
// local brokers, a follower's size right after a produce took 0.5–3.6 s, the leader's
// under 1 ms. So followers are the fallback, not a round robin.
func (bc *brokerClient) size(ctx context.Context, view map[string]meta.Broker, p meta.Partition, consumer string) (uint64, error) {
	var reply brokerapi.SizeReply
	q := url.Values{"topic": {p.Topic}, "partition": {strconv.Itoa(p.Index)}, "consumer_id": {consumer}}
	err := bc.withConsumer(ctx, view, p, consumer, func() error {
		return bc.onReplicas(ctx, view, replicaOrder(p), true, func(b meta.Broker) error {
			actx, cancel := context.WithTimeout(ctx, readAttempt)
			defer cancel()
			return bc.call(actx, b, http.MethodGet, "/size?"+q.Encode(), nil, &reply)
		})
	})
	return reply.Size, err
}

func peersOf(view map[string]meta.Broker, ids []string) []brokerapi.Peer {
	out := make([]brokerapi.Peer, 0, len(ids))
	for _, id := range ids {
		out = append(out, brokerapi.Peer{ID: id, RaftAddr: view[id].RaftAddr, HTTPAddr: view[id].Addr})
	}
	return out
}

// createReplica asks broker b to open its replica of p with the given members: all
// replicas (b among them) for a new group, or the current members (without b) to join
// an existing one, which then adds b through addMember.
func (bc *brokerClient) createReplica(ctx context.Context, view map[string]meta.Broker, b meta.Broker, p meta.Partition, members []string) error {
	return bc.postReplica(ctx, view, b, p, members, false)
}

// newReplica asks broker b to open its replica of the new partition p, whose group
// has never run: its members bootstrap it without asking each other first
// (brokerapi.CreateReplicaRequest.New).
func (bc *brokerClient) newReplica(ctx context.Context, view map[string]meta.Broker, b meta.Broker, p meta.Partition) error {
	return bc.postReplica(ctx, view, b, p, p.Replicas, true)
}

func (bc *brokerClient) postReplica(ctx context.Context, view map[string]meta.Broker, b meta.Broker, p meta.Partition, members []string, isNew bool) error {
	release, err := bc.openSlot(ctx, b)
	if err != nil {
		return err
	}
	defer release()
	return bc.call(ctx, b, http.MethodPost, "/replicas", brokerapi.CreateReplicaRequest{
		Topic: p.Topic, Partition: &p.Index, Peers: peersOf(view, members), Leader: p.Leader, New: isNew,
		RetentionMs: p.Retention.Ms, RetentionBytes: p.Retention.Bytes,
	}, nil)
}

// addMember adds broker nb to p's Raft group through its leader.
func (bc *brokerClient) addMember(ctx context.Context, view map[string]meta.Broker, p meta.Partition, nb meta.Broker) error {
	return bc.onLeader(ctx, view, p, func(b meta.Broker) error {
		return bc.call(ctx, b, http.MethodPost, replicaPath(p)+"/members", peersOf(view, []string{nb.ID})[0], nil)
	})
}

// removeMember removes broker id from p's Raft group through its leader.
func (bc *brokerClient) removeMember(ctx context.Context, view map[string]meta.Broker, p meta.Partition, id string) error {
	return bc.onLeader(ctx, view, p, func(b meta.Broker) error {
		return bc.call(ctx, b, http.MethodDelete, replicaPath(p)+"/members/"+url.PathEscape(id), nil, nil)
	})
}

// transferLeader asks p's leader to hand its leadership to broker id.
func (bc *brokerClient) transferLeader(ctx context.Context, view map[string]meta.Broker, p meta.Partition, id string) error {
	return bc.onLeader(ctx, view, p, func(b meta.Broker) error {
		return bc.call(ctx, b, http.MethodPost, replicaPath(p)+"/leader", brokerapi.TransferRequest{ID: id}, nil)
	})
}

// dropReplica makes b close and delete its replica of p.
func (bc *brokerClient) dropReplica(ctx context.Context, b meta.Broker, p meta.Partition) error {
	return bc.call(ctx, b, http.MethodDelete, replicaPath(p), nil, nil)
}

// replicaStatuses lists the replicas b holds, briefly: each one's leader, and its
// members where it leads.
func (bc *brokerClient) replicaStatuses(ctx context.Context, b meta.Broker) ([]brokerapi.ReplicaStatus, error) {
	var reply brokerapi.ListReplicasReply
	err := bc.call(ctx, b, http.MethodGet, "/replicas?brief=true", nil, &reply)
	return reply.Replicas, err
}

// replicaLeader asks p's replicas which broker leads it ("" while none does).
func (bc *brokerClient) replicaLeader(ctx context.Context, view map[string]meta.Broker, p meta.Partition) (string, error) {
	var st brokerapi.ReplicaStatus
	err := bc.onReplicas(ctx, view, replicaOrder(p), true, func(b meta.Broker) error {
		actx, cancel := context.WithTimeout(ctx, readAttempt)
		defer cancel()
		return bc.call(actx, b, http.MethodGet, replicaPath(p)+"?brief=true", nil, &st)
	})
	return st.Leader.ID, err
}
