package manager

import (
	"context"
	"net/http"

	"github.com/gofiber/fiber/v2"

	"github.com/quorumq/quorumq/manager/managerapi"
	"github.com/quorumq/quorumq/manager/meta"
)

// GET /consumer/consume?topic=&consumer_id=&seq=N is the seed's consume made safe to
// retry (meta/consumeseq.go): the client numbers its calls, 1, 2, 3... (any increasing
// numbers; a client that restarts may start from its clock). A call repeated with
// its number answers the messages it got the first time and moves nothing; the next
// number gets the next messages. Without seq the call is the seed's, at most once: a
// lost reply skips its messages for that consumer. With offset (and partition) the
// client keeps the position itself. A consumer consumed both with and without seq may
// get messages again that the calls without seq already returned, never fewer.
func (r *router) consumeSeq(ctx context.Context, c *fiber.Ctx, rd consumerRead) error {
	q := rd.q
	con, err := r.consumer(ctx, q.id)
	if err != nil {
		return beforeApply(err)
	}
	if last := con.Last; last != nil && *q.seq <= last.Seq {
		if *q.seq < last.Seq {
			return fail(http.StatusConflict, managerapi.CodeConflict, "seq %d is behind consumer %d's last consume (seq %d)", *q.seq, q.id, last.Seq)
		}
		return r.replaySeq(ctx, c, rd, *last)
	}
	for _, p := range rd.parts {
		from, known := con.Next[p.Index]
		if !known {
			if from, err = r.learnPosition(ctx, rd, p); err != nil {
				return err
			}
		}
		got, err := r.m.brokers.consume(ctx, rd.view, p, consumerName(q.id), &from, q.max)
		if err != nil {
			return err
		}
		if len(got.Messages) == 0 {
			continue
		}
		// Recorded before the reply goes: a retry of this seq must find it.
		rec := meta.Consumed{Consumer: q.id, Seq: *q.seq, Partition: p.Index, From: got.Offset, Count: len(got.Messages)}
		if _, err := r.m.apply(ctx, rec); err != nil {
			return err
		}
		return r.reply(c, q, p, got)
	}
	return noMessage(q)
}

// consumer reads a consumer's record as of every write completed before the call.
func (r *router) consumer(ctx context.Context, id uint64) (meta.Consumer, error) {
	var con meta.Consumer
	err := r.m.read(ctx, func(s *meta.State) error {
		con = s.Consumers[id]
		return nil
	})
	return con, err
}

// learnPosition records where the consumer stands in p, as the partition says, before
// anything is handed out from there; a position recorded first by a concurrent call
// stands.
func (r *router) learnPosition(ctx context.Context, rd consumerRead, p meta.Partition) (uint64, error) {
	at, err := r.m.brokers.position(ctx, rd.view, p, consumerName(rd.q.id))
	if err != nil {
		return 0, err
	}
	if _, err := r.m.apply(ctx, meta.Consumed{Consumer: rd.q.id, Partition: p.Index, From: at}); err != nil {
		return 0, err
	}
	con, err := r.consumer(ctx, rd.q.id)
	return con.Next[p.Index], err
}

// replaySeq answers a repeated seq with the messages it got the first time: the
// partition hands out the same range again for an offset behind the consumer.
func (r *router) replaySeq(ctx context.Context, c *fiber.Ctx, rd consumerRead, last meta.SeqReply) error {
	for _, p := range rd.parts {
		if p.Index != last.Partition {
			continue
		}
		got, err := r.m.brokers.consume(ctx, rd.view, p, consumerName(rd.q.id), &last.From, last.Count)
		if err != nil {
			return err
		}
		if len(got.Messages) == 0 {
			break
		}
		return r.reply(c, rd.q, p, got)
	}
	return fail(http.StatusConflict, managerapi.CodeConflict, "seq %d of consumer %d was answered from partition %d, which this call does not read", last.Seq, rd.q.id, last.Partition)
}
