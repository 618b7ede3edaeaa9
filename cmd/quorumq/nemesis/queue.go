package nemesis

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/quorumq/quorumq/clientlib"
	"github.com/quorumq/quorumq/cmd/quorumq/scenario"
	"github.com/quorumq/quorumq/discovery"
	"github.com/quorumq/quorumq/internal/transport"
)

// Queue is the queue under test: Consul, PostgreSQL, three managers and three
// brokers as real processes, a topic, and what its clients saw.
type Queue struct {
	t     testing.TB
	c     *scenario.Cluster
	cl    *clientlib.Client
	topic string
	parts int

	mu sync.Mutex
	h  QueueHistory
}

const queueTopic = "nemesis"

// StartQueue starts the cluster and creates the topic; dir holds the fault files.
func StartQueue(t testing.TB, dir string, partitions int) (*Queue, []*Domain) {
	t.Helper()
	c := scenario.Start(t, scenario.Options{Brokers: 3, Managers: 3,
		Env: func(id string) []string {
			return []string{transport.FaultFileEnv + "=" + filepath.Join(dir, id+".faults")}
		}})
	q := &Queue{t: t, c: c, cl: c.Client(t), topic: queueTopic, parts: partitions, h: QueueHistory{Log: map[int][]string{}}}
	if err := c.CreateTopic(context.Background(), q.cl, q.topic, partitions); err != nil {
		t.Fatal(err)
	}
	procs := func(nodes []*scenario.Node) []*Proc {
		var ps []*Proc
		for _, n := range nodes {
			ps = append(ps, &Proc{Name: n.ID, Raft: n.Raft, FaultFile: filepath.Join(dir, n.ID+".faults"),
				Pid: func() int { return n.Proc().Pid() }, Kill: n.Kill, Restart: func() { n.Restart(t) }})
		}
		return ps
	}
	managers := &Domain{Name: "managers", Procs: procs(c.Managers), Leader: func(ctx context.Context) string {
		ins, _ := c.Discovery.Healthy(ctx, discovery.ServiceManager)
		for _, in := range ins {
			if in.HasTag(discovery.TagLeader) {
				return in.ID
			}
		}
		return ""
	}}
	brokers := &Domain{Name: "brokers", Procs: procs(c.Brokers), Leader: func(ctx context.Context) string {
		info, err := q.cl.Admin().DescribeTopic(ctx, q.topic)
		if err != nil || len(info.Partitions) == 0 {
			return ""
		}
		return info.Partitions[0].Leader
	}}
	return q, []*Domain{managers, brokers}
}

// Produce sends records with the SDK's idempotent producer until ctx ends: each
// record is acknowledged with its place, or its outcome stays unknown.
func (q *Queue) Produce(ctx context.Context, id int) error {
	p, err := q.cl.NewProducer(retryCtx(ctx), q.topic)
	for err != nil && ctx.Err() == nil {
		time.Sleep(200 * time.Millisecond)
		p, err = q.cl.NewProducer(retryCtx(ctx), q.topic)
	}
	if err != nil {
		return nil // the run ended before the producer could register: nothing sent
	}
	for seq := 0; ctx.Err() == nil; seq++ {
		s := Send{Value: fmt.Sprintf("p%d-%06d", id, seq), Producer: id, Seq: seq}
		sctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		pos, err := p.Send(sctx, clientlib.Record{Value: s.Value})
		cancel()
		if err == nil {
			s.Acked, s.Partition, s.Offset = true, pos.Partition, pos.Offset
		} else {
			s.Err = err.Error()
		}
		q.mu.Lock()
		q.h.Sends = append(q.h.Sends, s)
		q.mu.Unlock()
		time.Sleep(10 * time.Millisecond)
	}
	return nil
}

// retryCtx bounds one registration attempt.
func retryCtx(ctx context.Context) context.Context {
	c, cancel := context.WithTimeout(ctx, 10*time.Second)
	context.AfterFunc(c, cancel)
	return c
}

// Consumer is one consumer of the topic and what it received.
type Consumer struct {
	q     *Queue
	id    int
	fetch func(ctx context.Context) ([]Delivery, error)
}

// NewConsumer registers a consumer that reads through the SDK (which names the
// offsets it expects), retrying while the cluster is faulted.
func (q *Queue) NewConsumer(ctx context.Context, id int) (*Consumer, error) {
	for {
		cs, err := q.cl.NewConsumer(retryCtx(ctx), q.topic)
		if err == nil {
			return &Consumer{q: q, id: id, fetch: func(ctx context.Context) ([]Delivery, error) {
				pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				defer cancel()
				msgs, err := cs.Poll(pctx, 100)
				out := make([]Delivery, len(msgs))
				for i, m := range msgs {
					out[i] = Delivery{Consumer: id, Partition: m.Partition, Offset: m.Offset, Value: m.Value}
				}
				return out, err
			}}, nil
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("register consumer: %w", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// NewSeqConsumer registers a consumer that reads with the seed's calls, numbered
// (seqConsumer).
func (q *Queue) NewSeqConsumer(ctx context.Context) (*Consumer, error) {
	sc, err := q.newSeqConsumer(ctx)
	if err != nil {
		return nil, err
	}
	return &Consumer{q: q, id: seqConsumerID, fetch: sc.next}, nil
}

// poll reads one batch and records it; false when there was nothing to read.
func (c *Consumer) poll(ctx context.Context) bool {
	got, err := c.fetch(ctx)
	if err != nil || len(got) == 0 {
		return false
	}
	c.q.mu.Lock()
	c.q.h.Deliveries = append(c.q.h.Deliveries, got...)
	c.q.mu.Unlock()
	return true
}

// Consume reads until ctx ends.
func (c *Consumer) Consume(ctx context.Context) {
	for ctx.Err() == nil {
		if !c.poll(ctx) {
			sleep(ctx, 50*time.Millisecond)
		}
	}
}

// Finish reads every partition to its end (faults healed) and lets the consumers
// drain it, then returns the history.
func (q *Queue) Finish(ctx context.Context, consumers []*Consumer) (*QueueHistory, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	for {
		log, err := q.readLog(ctx)
		if err != nil {
			return nil, err
		}
		total := 0
		for _, l := range log {
			total += len(l)
		}
		// Each consumer reads until it has a message per stored one, or finds nothing
		// more three times in a row (a lost message shows up in the check).
		for _, c := range consumers {
			for idle := 0; idle < 3 && c.delivered() < total && ctx.Err() == nil; {
				if c.poll(ctx) {
					idle = 0
				} else {
					idle++
					sleep(ctx, 300*time.Millisecond)
				}
			}
		}
		again, err := q.readLog(ctx)
		if err != nil {
			return nil, err
		}
		if sameLengths(log, again) {
			q.mu.Lock()
			defer q.mu.Unlock()
			h := q.h
			h.Log = again
			return &h, nil
		}
	}
}

func (c *Consumer) delivered() int {
	c.q.mu.Lock()
	defer c.q.mu.Unlock()
	n := 0
	for _, d := range c.q.h.Deliveries {
		if d.Consumer == c.id {
			n++
		}
	}
	return n
}

func sameLengths(a, b map[int][]string) bool {
	for p := range a {
		if len(a[p]) != len(b[p]) {
			return false
		}
	}
	return len(a) == len(b)
}

// readLog reads every partition from offset 0. A replica that is behind may end a
// read early, so the end is the furthest of several reads.
func (q *Queue) readLog(ctx context.Context) (map[int][]string, error) {
	log := map[int][]string{}
	for p := range q.parts {
		var msgs []string
		for misses := 0; misses < 5; {
			rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			got, _, err := q.cl.ReadAt(rctx, q.topic, p, int64(len(msgs)), 1000)
			cancel()
			switch {
			case ctx.Err() != nil:
				return nil, fmt.Errorf("read partition %d: %w", p, ctx.Err())
			case err != nil && !errors.Is(err, context.DeadlineExceeded):
				misses++
				sleep(ctx, 200*time.Millisecond)
			case len(got) == 0:
				misses++
			default:
				misses = 0
				for _, m := range got {
					msgs = append(msgs, m.Value)
				}
			}
		}
		log[p] = msgs
	}
	return log, nil
}
