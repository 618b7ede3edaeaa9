package broker

import (
	"context"
	"net/http"

	"github.com/gofiber/fiber/v2"

	"github.com/quorumq/quorumq/broker/partition"
)

func (b *Broker) produce(c *fiber.Ctx) error {
	var req ProduceRequest
	if err := parseBody(c, &req); err != nil {
		return err
	}
	if err := checkTopic(req.Topic, req.Partition); err != nil {
		return err
	}
	msgs := req.Messages
	if req.Message != nil {
		msgs = append([]string{*req.Message}, msgs...)
	}
	if len(msgs) == 0 {
		return failf(http.StatusBadRequest, "message or messages is required")
	}
	batch := partition.Batch{Producer: req.ProducerID, Seq: req.Seq, Msgs: make([][]byte, len(msgs))}
	for i, m := range msgs {
		if len(m) > b.cfg.MaxMessageBytes {
			return failf(http.StatusRequestEntityTooLarge, "message %d is %d bytes; the limit is %d", i, len(m), b.cfg.MaxMessageBytes)
		}
		batch.Msgs[i] = []byte(m)
	}
	r, err := b.leading(req.Topic, *req.Partition)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(c.UserContext(), requestTimeout)
	defer cancel()
	res, err := r.produce(ctx, batch)
	if err != nil {
		return err
	}
	switch res.Status {
	case partition.StatusOK, partition.StatusDuplicate:
		return success(c, ProduceReply{Offset: res.First, Count: int(res.Count), Duplicate: res.Status == partition.StatusDuplicate})
	case partition.StatusStaleSequence:
		return failf(http.StatusConflict, "seq %d of producer %s is older than its last batch", req.Seq, req.ProducerID)
	}
	return failf(http.StatusInternalServerError, "produce: %s", res.Status)
}
