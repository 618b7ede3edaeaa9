package clientlib

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/quorumq/quorumq/manager/managerapi"
)

// Message is a consumed message. Offset is -1 when the manager does not say.
type Message struct {
	Topic     string
	Partition int
	Offset    int64
	Value     string
}

// Consumer reads a topic with the seed's semantics: each call returns the consumer's
// next messages and advances its position on the managers. It remembers, per
// partition, the offset it expects next and names it in every request, so a request
// retried after a lost reply gets the same messages again instead of skipping them.
// Calls are serialised; a Consumer is safe for concurrent use but reads one batch at a
// time.
type Consumer struct {
	c     *Client
	topic string
	id    string // the managers' consumer id, as it goes in a query
	meta  *topicMeta
	fixed *int

	mu      sync.Mutex
	offsets map[int]int64 // next offset per partition, where known
	fresh   bool          // registered by us: partitions we have not read start at 0
	cursor  int           // partition to look at first, so no partition starves
	// seq numbers the calls of a resumed consumer (GET /consumer/consume?seq=): the
	// managers keep its position and answer a repeated number with the same messages.
	// It starts at the clock, so that it goes on growing across processes.
	seq uint64
}

// ConsumerOption configures a Consumer.
type ConsumerOption func(*Consumer)

// FromPartition reads only partition p.
func FromPartition(p int) ConsumerOption { return func(c *Consumer) { c.fixed = &p } }

// WithConsumerID resumes an existing consumer instead of registering a new one. Its
// positions are the managers': each call carries a sequence number, and a call retried
// after a lost reply gets the same messages again instead of skipping them. A consumer
// should be read by one process at a time.
func WithConsumerID(id string) ConsumerOption {
	return func(c *Consumer) { c.id = id }
}

// WithConsumerMetadataRefresh sets how often the partition count is re-read (default 5s).
func WithConsumerMetadataRefresh(d time.Duration) ConsumerOption {
	return func(c *Consumer) { c.meta.refresh = d }
}

// NewConsumer registers a consumer of topic (or resumes one, see WithConsumerID). A new
// consumer starts at the beginning of every partition.
func (c *Client) NewConsumer(ctx context.Context, topic string, opts ...ConsumerOption) (*Consumer, error) {
	cs := &Consumer{
		c: c, topic: topic,
		meta:    &topicMeta{admin: c.Admin(), topic: topic, refresh: 5 * time.Second},
		offsets: map[int]int64{},
	}
	for _, o := range opts {
		o(cs)
	}
	if cs.id != "" {
		cs.seq = uint64(time.Now().UnixNano())
		return cs, nil
	}
	var r managerapi.ConsumerReply
	if err := c.do(ctx, metadataWrite(http.MethodPost, "/consumer/register",
		managerapi.RegisterRequest{Topic: topic, Partition: cs.fixed}, &r)); err != nil {
		return nil, err
	}
	cs.id, cs.fresh = strconv.FormatUint(r.ConsumerID, 10), true
	return cs, nil
}

// ID is the consumer id; WithConsumerID(id) resumes this consumer later.
func (cs *Consumer) ID() string { return cs.id }

// Next returns the next message, or ErrNoMessage when there is none yet.
func (cs *Consumer) Next(ctx context.Context) (Message, error) {
	msgs, err := cs.Poll(ctx, 1)
	if err != nil {
		return Message{}, err
	}
	if len(msgs) == 0 {
		return Message{}, ErrNoMessage
	}
	return msgs[0], nil
}

// Poll returns up to max messages from one partition; none (and no error) when every
// partition is read to its end.
func (cs *Consumer) Poll(ctx context.Context, max int) ([]Message, error) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	parts := []int{0}
	if cs.fixed != nil {
		parts[0] = *cs.fixed
	} else {
		n, err := cs.meta.partitions(ctx)
		if err != nil {
			return nil, err
		}
		parts = make([]int, n)
		for i := range parts {
			parts[i] = (cs.cursor + i) % n
		}
	}
	for _, p := range parts {
		msgs, err := cs.fetch(ctx, p, max)
		if errors.Is(err, ErrNoMessage) || (err == nil && len(msgs) == 0) {
			continue
		}
		if err != nil {
			return nil, err
		}
		cs.cursor = p + 1
		return msgs, nil
	}
	return nil, nil
}

// fetch reads up to max messages of partition p from the offset this consumer expects.
func (cs *Consumer) fetch(ctx context.Context, p, max int) ([]Message, error) {
	q := url.Values{"topic": {cs.topic}, "consumer_id": {cs.id}, "partition": {strconv.Itoa(p)}}
	from, known := cs.offsets[p]
	if !known && cs.fresh {
		from, known = 0, true
	}
	switch {
	case cs.seq > 0:
		// Always by seq, even where the offset is known: the managers' position
		// must follow every read, or the next process resuming would start behind.
		cs.seq++
		q.Set("seq", strconv.FormatUint(cs.seq, 10))
	case known:
		q.Set("offset", strconv.FormatInt(from, 10))
	}
	if max > 1 {
		q.Set("max", strconv.Itoa(max))
	}
	var r managerapi.ConsumeReply
	if err := cs.c.do(ctx, call{method: http.MethodGet, path: "/consumer/consume", query: q, out: &r, write: true}); err != nil {
		return nil, err
	}
	values := r.Messages
	if len(values) == 0 && r.Message != nil {
		values = []string{*r.Message}
	}
	msgs := make([]Message, len(values))
	for i, v := range values {
		msgs[i] = Message{Topic: cs.topic, Partition: r.Partition, Offset: int64(r.Offset) + int64(i), Value: v}
	}
	if len(msgs) > 0 {
		cs.offsets[p] = msgs[len(msgs)-1].Offset + 1
	}
	return msgs, nil
}

// Size returns how many messages are left for this consumer.
func (cs *Consumer) Size(ctx context.Context) (int64, error) {
	q := url.Values{"topic": {cs.topic}, "consumer_id": {cs.id}}
	if cs.fixed != nil {
		q.Set("partition", strconv.Itoa(*cs.fixed))
	}
	var r managerapi.SizeReply
	if err := cs.c.do(ctx, call{method: http.MethodGet, path: "/size", query: q, out: &r}); err != nil {
		return 0, err
	}
	return int64(r.Size), nil
}
