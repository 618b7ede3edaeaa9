package broker

import (
	"bytes"
	"context"
	"net/http"
	"strconv"
	"strings"

	"github.com/gofiber/fiber/v2"

	"github.com/quorumq/quorumq/broker/brokerapi"
	"github.com/quorumq/quorumq/broker/partition"
)

func (b *Broker) produce(c *fiber.Ctx) error {
	var (
		topic string
		part  *int
		batch partition.Batch
		err   error
	)
	if bytes.HasPrefix(c.Request().Header.ContentType(), []byte(brokerapi.MIMEBatch)) {
		topic, part, batch, err = b.parseBinaryProduce(c)
	} else {
		topic, part, batch, err = b.parseJSONProduce(c)
	}
	if err != nil {
		return err
	}
	r, err := b.leading(topic, *part)
	if err != nil {
		return err
	}
	if err := checkSeq(r.fsm, batch); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(c.UserContext(), requestTimeout)
	defer cancel()
	res, err := r.produce(ctx, batch)
	if err != nil {
		return err
	}
	if res.Status == partition.StatusOK {
		countIn(r.topic, batch.Msgs)
	}
	switch res.Status {
	case partition.StatusOK, partition.StatusDuplicate:
		return success(c, brokerapi.ProduceReply{Offset: res.First, Count: int(res.Count), Duplicate: res.Status == partition.StatusDuplicate})
	case partition.StatusStaleSequence:
		return failf(http.StatusConflict, "seq %d of producer %s is older than its last batch", batch.Seq, batch.Producer)
	}
	return failf(http.StatusInternalServerError, "produce: %s", res.Status)
}

func (b *Broker) parseJSONProduce(c *fiber.Ctx) (string, *int, partition.Batch, error) {
	var req brokerapi.ProduceRequest
	if err := parseBody(c, &req); err != nil {
		return "", nil, partition.Batch{}, err
	}
	if err := checkTopic(req.Topic, req.Partition); err != nil {
		return "", nil, partition.Batch{}, err
	}
	msgs := req.Messages
	if req.Message != nil {
		msgs = append([]string{*req.Message}, msgs...)
	}
	if len(msgs) == 0 {
		return "", nil, partition.Batch{}, failf(http.StatusBadRequest, "message or messages is required")
	}
	batch := partition.Batch{Producer: req.ProducerID, Msgs: make([][]byte, len(msgs))}
	if err := setSeq(&batch, req.Seq); err != nil {
		return "", nil, partition.Batch{}, err
	}
	for i, m := range msgs {
		if err := b.checkSize(i, len(m)); err != nil {
			return "", nil, partition.Batch{}, err
		}
		batch.Msgs[i] = []byte(m)
	}
	return req.Topic, req.Partition, batch, nil
}

// parseBinaryProduce reads a MIMEBatch request. The messages alias the request body,
// which fasthttp reuses once the handler returns: replica.produce encodes them into
// the Raft command (their one copy) before it queues them.
func (b *Broker) parseBinaryProduce(c *fiber.Ctx) (string, *int, partition.Batch, error) {
	topic := strings.Clone(c.Query("topic"))
	var part *int
	if s := c.Query("partition"); s != "" {
		p, err := strconv.Atoi(s)
		if err != nil {
			return "", nil, partition.Batch{}, failf(http.StatusBadRequest, "partition %q is not a number", s)
		}
		part = &p
	}
	if err := checkTopic(topic, part); err != nil {
		return "", nil, partition.Batch{}, err
	}
	batch := partition.Batch{Producer: strings.Clone(c.Query("producer_id"))}
	var seq *uint64
	if s := c.Query("seq"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return "", nil, partition.Batch{}, failf(http.StatusBadRequest, "seq %q is not a number", s)
		}
		seq = &n
	}
	if err := setSeq(&batch, seq); err != nil {
		return "", nil, partition.Batch{}, err
	}
	msgs, err := brokerapi.SplitBatch(c.Body())
	if err != nil {
		return "", nil, partition.Batch{}, failf(http.StatusBadRequest, "%v", err)
	}
	if len(msgs) == 0 {
		return "", nil, partition.Batch{}, failf(http.StatusBadRequest, "the %s body holds no message", brokerapi.MIMEBatch)
	}
	for i, m := range msgs {
		if err := b.checkSize(i, len(m)); err != nil {
			return "", nil, partition.Batch{}, err
		}
	}
	batch.Msgs = msgs
	return topic, part, batch, nil
}

// MaxSeqAhead is how far a producer's seq may run ahead of the last one its
// partition stored (or of 0 for a producer new to the partition). Clients
// number batches 0, 1, 2, ... and skip one per batch that failed for good, so
// only an absurd seq goes further; stored, it would make every later batch of
// the producer stale (seq 2^64-1 made producer 5 answer 409 for good).
const MaxSeqAhead = 1 << 32

// setSeq gives the batch of a producer its seq, which it must have: without
// one, the producer's second batch was taken for a retry of its first and
// dropped. A seq without a producer_id means nothing and is ignored.
func setSeq(batch *partition.Batch, seq *uint64) error {
	if batch.Producer == "" {
		return nil
	}
	if seq == nil {
		return failf(http.StatusBadRequest, "producer_id %s needs seq, its batch's number (0, 1, 2, ...): without one a second batch would be taken for a retry of the first", batch.Producer)
	}
	batch.Seq = *seq
	return nil
}

// checkSeq refuses a seq more than MaxSeqAhead past the producer's last one.
// It runs on the leader before the batch is proposed, so the state machine
// (and the entries already in logs) stay as they are.
func checkSeq(fsm *partition.FSM, batch partition.Batch) error {
	if batch.Producer == "" {
		return nil
	}
	last, _ := fsm.Producer(batch.Producer)
	if batch.Seq > last.Seq && batch.Seq-last.Seq > MaxSeqAhead {
		return failf(http.StatusBadRequest, "seq %d of producer %s is more than %d past its last one (%d)", batch.Seq, batch.Producer, uint64(MaxSeqAhead), last.Seq)
	}
	return nil
}

func (b *Broker) checkSize(i, n int) error {
	if n > b.cfg.MaxMessageBytes {
		return failf(http.StatusRequestEntityTooLarge, "message %d is %d bytes; the limit is %d", i, n, b.cfg.MaxMessageBytes)
	}
	return nil
}
