package manager

import (
	"context"
	"net/http"
	"net/url"
	"slices"
	"strconv"

	"github.com/gofiber/fiber/v2"

	"github.com/quorumq/quorumq/broker/brokerapi"
	"github.com/quorumq/quorumq/manager/managerapi"
	"github.com/quorumq/quorumq/manager/meta"
)

// readAt answers GET /topics/{name}/partitions/{partition}/messages?offset=N&max=M:
// up to M messages from offset N, moving no consumer (replay, peek). Every replica can
// answer it from its own store (committed messages never change), so the reads of a
// partition go round robin over its replicas on alive brokers, and one that fails is
// passed over for the next. A replica that is behind answers with fewer messages than
// the leader would, possibly none: next_offset says where the next read starts.
func (r *router) readAt(c *fiber.Ctx) error {
	name, raw := c.Params("name"), c.Params("partition")
	idx, err := strconv.Atoi(raw)
	if err != nil || idx < 0 {
		return badRequest("partition must be a non-negative number, got %q", raw)
	}
	offset, limit, err := brokerapi.ReadAtRange(c.Query)
	if err != nil {
		return badRequest("%v", err)
	}
	ctx, cancel := reqCtx(c)
	defer cancel()
	var (
		p    meta.Partition
		view map[string]meta.Broker
	)
	err = r.lookup(ctx, func(s *meta.State) error {
		t, ok := s.Topics[name]
		if !ok {
			return unknownTopic(name)
		}
		if idx >= len(t.Partitions) {
			return fail(http.StatusNotFound, managerapi.CodeNotFound, "topic %q has no partition %d (it has %d)", name, idx, len(t.Partitions))
		}
		p, view = partitionView(s, t, idx)
		return nil
	})
	if err != nil {
		return err
	}
	got, from, err := r.m.brokers.readAt(ctx, view, p, r.readOrder(p, view), offset, limit)
	if err != nil {
		return err
	}
	return c.JSON(managerapi.MessagesReply{Reply: managerapi.Success, Partition: p.Index, Offset: got.Offset,
		NextOffset: got.Next, Messages: got.Messages, Broker: from})
}

// readOrder lists p's replicas on alive brokers, starting one further along at each
// call: the round robin of reads over a partition's replicas.
func (r *router) readOrder(p meta.Partition, view map[string]meta.Broker) []string {
	var alive []string
	for _, id := range p.Replicas {
		if b, ok := view[id]; ok && b.State == meta.BrokerAlive {
			alive = append(alive, id)
		}
	}
	if len(alive) == 0 {
		return nil
	}
	g := p.GroupName()
	r.mu.Lock()
	turn := r.reads[g]
	r.reads[g] = turn + 1
	r.mu.Unlock()
	start := int(turn % uint64(len(alive)))
	return slices.Concat(alive[start:], alive[:start])
}

// readAt reads by offset from the first replica in order that answers, and says which.
func (bc *brokerClient) readAt(ctx context.Context, view map[string]meta.Broker, p meta.Partition,
	order []string, offset, limit uint64) (brokerapi.ReadAtReply, string, error) {
	var (
		reply brokerapi.ReadAtReply
		from  string
	)
	q := url.Values{"offset": {strconv.FormatUint(offset, 10)}, "max": {strconv.FormatUint(limit, 10)}}
	err := bc.onReplicas(ctx, view, order, true, func(b meta.Broker) error {
		actx, cancel := context.WithTimeout(ctx, readAttempt)
		defer cancel()
		from = b.ID
		return bc.call(actx, b, http.MethodGet, replicaPath(p)+"/messages?"+q.Encode(), nil, &reply)
	})
	return reply, from, err
}
