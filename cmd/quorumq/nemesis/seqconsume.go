package nemesis

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/quorumq/quorumq/cmd/quorumq/proctest"
	"github.com/quorumq/quorumq/manager/managerapi"
)

// seqConsumer consumes with the seed's call shape, no offsets, made retry-safe by
// numbering the calls (GET /consumer/consume?...&seq=N): a call that got no answer
// is repeated with its number, on the next manager, and must neither skip nor repeat
// a message. It talks HTTP to the managers directly, as a client without the SDK.
type seqConsumer struct {
	q    *Queue
	id   string
	seq  uint64 // the last call answered
	node int
	hc   *http.Client // the secured managers' TLS and admin token
}

// newSeqConsumer registers a consumer of the queue's topic.
func (q *Queue) newSeqConsumer(ctx context.Context) (*seqConsumer, error) {
	c := &seqConsumer{q: q, hc: proctest.HTTPClient(q.t)}
	for {
		var r struct {
			ConsumerID json.Number `json:"consumer_id"`
		}
		status, err := c.call(ctx, http.MethodPost, "/consumer/register", managerapi.RegisterRequest{Topic: q.topic}, &r)
		if err == nil && status == http.StatusOK {
			c.id = r.ConsumerID.String()
			return c, nil
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("register consumer: %v (status %d)", err, status)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// next makes the next consume call until it is answered: the messages, or none. A
// call left unanswered when ctx ends is made again, with its number, by the next next.
func (c *seqConsumer) next(ctx context.Context) ([]Delivery, error) {
	n := c.seq + 1
	for {
		q := url.Values{"topic": {c.q.topic}, "consumer_id": {c.id}, "seq": {strconv.FormatUint(n, 10)}, "max": {"100"}}
		var r managerapi.ConsumeReply
		status, err := c.call(ctx, http.MethodGet, "/consumer/consume?"+q.Encode(), nil, &r)
		switch {
		case err == nil && status == http.StatusOK:
			c.seq = n
			msgs := r.Messages
			if len(msgs) == 0 && r.Message != nil {
				msgs = []string{*r.Message}
			}
			out := make([]Delivery, len(msgs))
			for i, m := range msgs {
				out[i] = Delivery{Consumer: seqConsumerID, Partition: r.Partition, Offset: int64(r.Offset) + int64(i), Value: m}
			}
			return out, nil
		case err == nil && status == http.StatusNotFound:
			c.seq = n
			return nil, nil // nothing new
		case ctx.Err() != nil:
			return nil, ctx.Err()
		}
		c.node = (c.node + 1) % len(c.q.c.Managers) // no answer: the same call elsewhere
		time.Sleep(100 * time.Millisecond)
	}
}

// seqConsumerID tells the seq consumer's deliveries from the SDK consumer's.
const seqConsumerID = 1

// call sends one request to the current manager; err is nil when an answer came.
func (c *seqConsumer) call(ctx context.Context, method, path string, body, out any) (int, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, err
		}
		rd = bytes.NewReader(b)
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, proctest.URL(c.q.c.Managers[c.node].HTTP, path), rd)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.hc.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	if resp.StatusCode == http.StatusOK {
		return resp.StatusCode, json.Unmarshal(b, out)
	}
	var f managerapi.Failure
	if json.Unmarshal(b, &f) == nil && resp.StatusCode == http.StatusNotFound && f.Code != managerapi.CodeNoMessage {
		return 0, fmt.Errorf("%s", f.Message) // not "no message": retried
	}
	return resp.StatusCode, nil
}
