package manager

import (
	"context"
	"encoding/json"
	"errors"
	"hash/fnv"
	"net/http"
	"slices"
	"strconv"
	"sync"

	"github.com/gofiber/fiber/v2"

	"github.com/quorumq/quorumq/broker/brokerapi"
	"github.com/quorumq/quorumq/manager/managerapi"
	"github.com/quorumq/quorumq/manager/meta"
)

// router sends produce, consume and size to the brokers leading the partitions, and
// reads by offset to any of their replicas (readat.go).
type router struct {
	m *Manager

	mu      sync.Mutex
	rr      map[string]uint64 // topic → next partition for keyless produce
	cursors map[uint64]int    // consumer → partition to look at first
	reads   map[string]uint64 // partition group → turn of its next read by offset
}

func newRouter(m *Manager) *router {
	return &router{m: m, rr: map[string]uint64{}, cursors: map[uint64]int{}, reads: map[string]uint64{}}
}

// lookup reads what fn needs from the local state and, when fn says something is
// missing, again after a read barrier: a producer registered a moment ago through
// another manager may not have reached this one yet, and the barrier is only paid then.
func (r *router) lookup(ctx context.Context, fn func(*meta.State) error) error {
	var err error
	r.m.store.Read(func(s *meta.State) { err = fn(s) })
	var ae *apiError
	if err == nil || !errors.As(err, &ae) || ae.status != http.StatusNotFound {
		return err
	}
	return r.m.read(ctx, fn)
}

func (r *router) produce(c *fiber.Ctx) error {
	var req managerapi.ProduceRequest
	if err := parseBody(c, &req); err != nil {
		return err
	}
	msgs := req.Messages
	if req.Message != nil {
		msgs = append([]string{*req.Message}, msgs...)
	}
	if req.Topic == "" || len(msgs) == 0 {
		return badRequest(`produce needs "topic", "producer_id" and "message" (or "messages")`)
	}
	ctx, cancel := reqCtx(c)
	defer cancel()
	var (
		p    meta.Partition
		view map[string]meta.Broker
	)
	err := r.lookup(ctx, func(s *meta.State) error {
		t, err := producerTopic(s, req.Topic, req.ProducerID)
		if err != nil {
			return err
		}
		idx, err := r.pickPartition(t, req.Partition, req.Key)
		if err != nil {
			return err
		}
		p, view = partitionView(s, t, idx)
		return nil
	})
	if err != nil {
		return beforeApply(err)
	}
	first, err := r.m.brokers.produce(ctx, view, p, producerName(req.ProducerID), req.Seq, msgs)
	if err != nil {
		return err
	}
	return c.JSON(managerapi.ProduceReply{Reply: managerapi.Success, Partition: p.Index, Offset: first, Count: len(msgs)})
}

// producerTopic checks that the producer may write to the topic.
func producerTopic(s *meta.State, topic string, id uint64) (*meta.Topic, error) {
	t, ok := s.Topics[topic]
	if !ok {
		return nil, unknownTopic(topic)
	}
	pr, ok := s.Producers[id]
	if !ok {
		return nil, fail(http.StatusNotFound, managerapi.CodeUnknownProducer, "producer %d is not registered", id)
	}
	if pr.Topic != topic {
		return nil, badRequest("producer %d is registered for topic %q, not %q", id, pr.Topic, topic)
	}
	return t, nil
}

// pickPartition chooses the partition of a produce: the one asked for, else by key
// hash, else round robin.
func (r *router) pickPartition(t *meta.Topic, asked *int, key string) (int, error) {
	n := len(t.Partitions)
	switch {
	case asked != nil:
		if *asked < 0 || *asked >= n {
			return 0, fail(http.StatusNotFound, managerapi.CodeNotFound, "topic %q has no partition %d (it has %d)", t.Name, *asked, n)
		}
		return *asked, nil
	case key != "":
		h := fnv.New32a()
		h.Write([]byte(key))
		return int(h.Sum32() % uint32(n)), nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	i := r.rr[t.Name]
	r.rr[t.Name] = i + 1
	return int(i % uint64(n)), nil
}

// consumerQuery is what consume and size read from the query string.
type consumerQuery struct {
	topic     string
	id        uint64
	partition *int
	offset    *uint64
	seq       *uint64 // consume by seq (consumeseq.go)
	max       int
}

// consumerParams returns how to read consume/size parameters: from the query string,
// or, for seed-style clients that send a JSON body with their GET, from that body.
func consumerParams(c *fiber.Ctx) (func(string) string, error) {
	if c.Query("topic") != "" || len(c.Body()) == 0 {
		return func(k string) string { return c.Query(k) }, nil
	}
	var body map[string]json.RawMessage
	if err := json.Unmarshal(c.Body(), &body); err != nil {
		return nil, badRequest("request body is not a JSON object: %v", err)
	}
	return func(k string) string {
		var s string
		if json.Unmarshal(body[k], &s) == nil {
			return s
		}
		return string(body[k])
	}, nil
}

func parseConsumerQuery(c *fiber.Ctx) (consumerQuery, error) {
	param, err := consumerParams(c)
	if err != nil {
		return consumerQuery{}, err
	}
	q := consumerQuery{topic: param("topic"), max: 1}
	if q.topic == "" {
		return q, badRequest(`query parameter "topic" is required`)
	}
	raw := param("consumer_id")
	id, err := strconv.ParseUint(raw, 10, 64)
	if err != nil {
		return q, badRequest("query parameter consumer_id must be a consumer id (a number), got %q", raw)
	}
	q.id = id
	if v := param("partition"); v != "" {
		p, err := strconv.Atoi(v)
		if err != nil {
			return q, badRequest("query parameter partition must be a number, got %q", v)
		}
		q.partition = &p
	}
	if v := param("offset"); v != "" {
		o, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return q, badRequest("query parameter offset must be a non-negative number, got %q", v)
		}
		q.offset = &o
	}
	if v := param("seq"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil || n == 0 {
			return q, badRequest("query parameter seq must be a positive number, got %q", v)
		}
		if q.offset != nil {
			return q, badRequest("give offset or seq, not both")
		}
		q.seq = &n
	}
	if v := param("max"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 10000 {
			return q, badRequest("query parameter max must be between 1 and 10000, got %q", v)
		}
		q.max = n
	}
	return q, nil
}

// consumerPartitions resolves the consumer and the partitions it reads, in the order
// to look at them, and the brokers holding their replicas.
func (r *router) consumerPartitions(ctx context.Context, q consumerQuery) ([]meta.Partition, map[string]meta.Broker, error) {
	var (
		parts []meta.Partition
		view  map[string]meta.Broker
	)
	err := r.lookup(ctx, func(s *meta.State) error {
		defer func() {
			// Copied under the read: Apply edits replica lists in place.
			for i := range parts {
				parts[i].Replicas = append([]string(nil), parts[i].Replicas...)
			}
			view = replicaView(s, parts)
		}()
		t, ok := s.Topics[q.topic]
		if !ok {
			return unknownTopic(q.topic)
		}
		con, ok := s.Consumers[q.id]
		if !ok {
			return fail(http.StatusNotFound, managerapi.CodeUnknownConsumer, "consumer %d is not registered", q.id)
		}
		if con.Topic != q.topic {
			return badRequest("consumer %d is registered for topic %q, not %q", q.id, con.Topic, q.topic)
		}
		pin := con.Partition
		if q.partition != nil {
			if pin != nil && *pin != *q.partition {
				return badRequest("consumer %d reads partition %d only", q.id, *pin)
			}
			pin = q.partition
		}
		if pin != nil {
			if *pin < 0 || *pin >= len(t.Partitions) {
				return fail(http.StatusNotFound, managerapi.CodeNotFound, "topic %q has no partition %d", q.topic, *pin)
			}
			parts = []meta.Partition{t.Partitions[*pin]}
			return nil
		}
		r.mu.Lock()
		start := r.cursors[q.id]
		r.mu.Unlock()
		for i := range t.Partitions {
			parts = append(parts, t.Partitions[(start+i)%len(t.Partitions)])
		}
		return nil
	})
	return parts, view, err
}

// consumerRead is a consume or size request resolved: the consumer, the partitions it
// reads in the order to look at them, and the brokers to address.
type consumerRead struct {
	q     consumerQuery
	parts []meta.Partition
	view  map[string]meta.Broker
}

func (r *router) consumerRead(ctx context.Context, c *fiber.Ctx) (consumerRead, error) {
	q, err := parseConsumerQuery(c)
	if err != nil {
		return consumerRead{}, err
	}
	parts, view, err := r.consumerPartitions(ctx, q)
	if err != nil {
		return consumerRead{}, err
	}
	return consumerRead{q: q, parts: parts, view: view}, nil
}

func (r *router) consume(c *fiber.Ctx) error {
	ctx, cancel := reqCtx(c)
	defer cancel()
	rd, err := r.consumerRead(ctx, c)
	if err != nil {
		return beforeApply(err)
	}
	q := rd.q
	if q.seq != nil {
		return r.consumeSeq(ctx, c, rd)
	}
	for _, p := range rd.parts {
		got, err := r.m.brokers.consume(ctx, rd.view, p, consumerName(q.id), q.offset, q.max)
		if err != nil {
			return err
		}
		if len(got.Messages) == 0 {
			continue
		}
		return r.reply(c, q, p, got)
	}
	return noMessage(q)
}

// reply answers a consume with what partition p handed out.
func (r *router) reply(c *fiber.Ctx, q consumerQuery, p meta.Partition, got brokerapi.ConsumeReply) error {
	r.mu.Lock()
	r.cursors[q.id] = p.Index + 1 // the next call starts after this one: no partition starves
	r.mu.Unlock()
	reply := managerapi.ConsumeReply{Reply: managerapi.Success, Partition: p.Index, Offset: got.Offset, NextOffset: got.Next}
	if q.max == 1 && len(got.Messages) == 1 {
		reply.Message = &got.Messages[0]
	} else {
		reply.Messages = got.Messages
	}
	return c.JSON(reply)
}

func noMessage(q consumerQuery) error {
	return fail(http.StatusNotFound, managerapi.CodeNoMessage, "no new message for consumer %d on topic %q", q.id, q.topic)
}

func (r *router) size(c *fiber.Ctx) error {
	ctx, cancel := reqCtx(c)
	defer cancel()
	rd, err := r.consumerRead(ctx, c)
	if err != nil {
		return err
	}
	var total uint64
	for _, p := range rd.parts {
		n, err := r.m.brokers.size(ctx, rd.view, p, consumerName(rd.q.id))
		if err != nil {
			return err
		}
		total += n
	}
	return c.JSON(managerapi.SizeReply{Reply: managerapi.Success, Size: total})
}

// The names under which producers and consumers are known to the partitions.
func producerName(id uint64) string { return "p" + strconv.FormatUint(id, 10) }
func consumerName(id uint64) string { return "c" + strconv.FormatUint(id, 10) }

// replicaView is a copy of the brokers holding replicas of parts, for addressing them:
// read in the same pass over the state as the partitions, so produce and consume read
// the state once and copy only the brokers they may call.
func replicaView(s *meta.State, parts []meta.Partition) map[string]meta.Broker {
	out := map[string]meta.Broker{}
	for _, p := range parts {
		for _, id := range p.Replicas {
			if b, ok := s.Brokers[id]; ok {
				out[id] = *b
			}
		}
	}
	return out
}

// partitionView copies partition idx of t (its replica list too: Apply edits it in
// place) and the brokers holding it, inside a read of the state.
func partitionView(s *meta.State, t *meta.Topic, idx int) (meta.Partition, map[string]meta.Broker) {
	p := t.Partitions[idx]
	p.Replicas = slices.Clone(p.Replicas)
	return p, replicaView(s, []meta.Partition{p})
}

// brokerView is a copy of the known brokers, for addressing them.
func (m *Manager) brokerView() map[string]meta.Broker {
	var out map[string]meta.Broker
	m.store.Read(func(s *meta.State) {
		out = make(map[string]meta.Broker, len(s.Brokers))
		for id, b := range s.Brokers {
			out[id] = *b
		}
	})
	return out
}
