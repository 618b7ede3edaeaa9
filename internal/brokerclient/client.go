// Package brokerclient talks to brokers directly over their HTTP API (broker/api.go):
// it follows partition leadership and retries produce and consume safely (same seq,
// same expected offset). The bench and the broker's process tests use it; applications
// go through the managers with clientlib.
package brokerclient

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/quorumq/quorumq/broker/brokerapi"
	"github.com/quorumq/quorumq/internal/httpjson"
	"github.com/quorumq/quorumq/internal/retry"
)

// Client knows a set of brokers (HTTP addresses) and which one leads each partition.
type Client struct {
	HTTP    *http.Client
	Brokers []string // host:port of every broker's HTTP API

	scheme string // "http", or "https" once Secure gave a TLS config
	token  string // bearer token, when Secure gave one

	mu      sync.Mutex
	leaders map[string]string // "topic/partition" → leader's HTTP address
}

// New returns a client for brokers.
func New(brokers ...string) *Client {
	// A produce body is a whole batch: with the default 4 KiB write buffer a batch of
	// 100 1 KiB messages took 25 writes.
	tr := &http.Transport{MaxIdleConnsPerHost: 1024, WriteBufferSize: 256 << 10}
	return &Client{HTTP: &http.Client{Transport: tr, Timeout: 15 * time.Second},
		Brokers: brokers, leaders: map[string]string{}, scheme: "http"}
}

// Secure makes the client speak TLS with tlsCfg (a cluster member's client
// configuration, or one with the CA for a token holder) and, when token is not empty,
// send it as the bearer token. Call it before the first request.
func (c *Client) Secure(tlsCfg *tls.Config, token string) {
	if tlsCfg != nil {
		// A Transport of the caller's own (the bench's) brings its own TLS.
		if tr, ok := c.HTTP.Transport.(*http.Transport); ok {
			tr.TLSClientConfig = tlsCfg
		}
		c.scheme = "https"
	}
	c.token = token
}

// Error is a failure reply.
type Error struct {
	Code    int
	Message string
	Leader  *brokerapi.Peer
	Reason  string  // brokerapi.Failure.Code
	Outcome string  // brokerapi.Failure.Outcome
	Offset  *uint64 // brokerapi.Failure.Offset
	// Earliest is brokerapi.Failure.EarliestOffset: on a 410, where the partition starts.
	Earliest *uint64
}

func (e *Error) Error() string { return fmt.Sprintf("%d: %s", e.Code, e.Message) }

// Do sends one request to addr and decodes the success reply into out.
func (c *Client) Do(ctx context.Context, method, addr, path string, in, out any) error {
	var body []byte
	if in != nil {
		var err error
		if body, err = json.Marshal(in); err != nil {
			return err
		}
	}
	return c.send(ctx, method, addr, path, "application/json", body, out)
}

// send sends body (nil: none) as contentType and decodes the success reply into out.
func (c *Client) send(ctx context.Context, method, addr, path, contentType string, body []byte, out any) error {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.scheme+"://"+addr+path, rd)
	if err != nil {
		return err
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	req.Header.Set("Content-Type", contentType)
	batchOut, batch := out.(batchReply)
	if batch {
		req.Header.Set("Accept", brokerapi.MIMEBatch)
	}
	var f brokerapi.Failure
	resp, data, err := httpjson.Do(c.HTTP, req, &f)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return &Error{Code: resp.StatusCode, Message: f.Message, Leader: f.Leader, Reason: f.Code, Outcome: f.Outcome, Offset: f.Offset, Earliest: f.EarliestOffset}
	}
	if out == nil {
		return nil
	}
	if batch && resp.Header.Get("Content-Type") == brokerapi.MIMEBatch {
		return batchOut.UnmarshalBatch(resp.Header, data)
	}
	return json.Unmarshal(data, out)
}

// batchReply is a reply the broker can send in its binary batch format
// (broker.ConsumeReply), which costs both sides far less than JSON.
type batchReply interface {
	UnmarshalBatch(h http.Header, body []byte) error
}

func key(topic string, part int) string { return fmt.Sprintf("%s/%d", topic, part) }

// CreatePartition creates a replica of topic/part on every peer.
func (c *Client) CreatePartition(ctx context.Context, topic string, part int, peers []brokerapi.Peer) error {
	errs := make(chan error, len(peers))
	for _, p := range peers {
		go func() {
			errs <- c.Do(ctx, http.MethodPost, p.HTTPAddr, "/replicas",
				brokerapi.CreateReplicaRequest{Topic: topic, Partition: &part, Peers: peers}, nil)
		}()
	}
	var all []error
	for range peers {
		all = append(all, <-errs)
	}
	return errors.Join(all...)
}

// Status returns one broker's view of a partition.
func (c *Client) Status(ctx context.Context, addr, topic string, part int) (brokerapi.ReplicaStatus, error) {
	var st brokerapi.ReplicaStatus
	err := c.Do(ctx, http.MethodGet, addr, fmt.Sprintf("/replicas/%s/%d", topic, part), nil, &st)
	return st, err
}

// Leader returns the HTTP address of the partition's leader, asking the brokers when
// it is not known.
func (c *Client) Leader(ctx context.Context, topic string, part int) (string, error) {
	c.mu.Lock()
	addr, ok := c.leaders[key(topic, part)]
	c.mu.Unlock()
	if ok {
		return addr, nil
	}
	for _, b := range c.Brokers {
		st, err := c.Status(ctx, b, topic, part)
		if err == nil && st.Leader.HTTPAddr != "" {
			c.setLeader(topic, part, st.Leader.HTTPAddr)
			return st.Leader.HTTPAddr, nil
		}
	}
	return "", fmt.Errorf("brokerclient: no leader known for %s/%d", topic, part)
}

func (c *Client) setLeader(topic string, part int, addr string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if addr == "" {
		delete(c.leaders, key(topic, part))
	} else {
		c.leaders[key(topic, part)] = addr
	}
}

// onLeader runs a write against the partition's leader until it succeeds, fails for
// good (a 4xx other than 421), or ctx ends. Writes are retried as they are (same seq,
// same offset), which is what makes retrying them safe.
func (c *Client) onLeader(ctx context.Context, topic string, part int, path string, in, out any) error {
	body, err := json.Marshal(in)
	if err != nil {
		return err
	}
	return c.sendToLeader(ctx, topic, part, path, "application/json", body, out)
}

// sendToLeader is onLeader for a body already encoded as contentType.
func (c *Client) sendToLeader(ctx context.Context, topic string, part int, path, contentType string, body []byte, out any) error {
	b := retry.Policy{First: 20 * time.Millisecond, Max: time.Second}.Start()
	for {
		addr, err := c.Leader(ctx, topic, part)
		if err == nil {
			err = c.send(ctx, http.MethodPost, addr, path, contentType, body, out)
			var e *Error
			switch {
			case err == nil:
				return nil
			case errors.As(err, &e) && e.Code == http.StatusMisdirectedRequest && e.Leader != nil && e.Leader.HTTPAddr != "":
				c.setLeader(topic, part, e.Leader.HTTPAddr)
				continue
			case errors.As(err, &e) && e.Code >= 400 && e.Code < 500 && e.Code != http.StatusMisdirectedRequest:
				return err
			}
			c.setLeader(topic, part, "")
		}
		if werr := b.Wait(ctx); werr != nil {
			return fmt.Errorf("brokerclient: %s on %s/%d: %w (last error: %v)", path, topic, part, werr, err)
		}
	}
}

// Produce appends msgs as producer's batch seq and returns the reply. It sends the
// binary body (brokerapi.MIMEBatch).
func (c *Client) Produce(ctx context.Context, topic string, part int, producer string, seq uint64, msgs []string) (brokerapi.ProduceReply, error) {
	n := 0
	for _, m := range msgs {
		n += binary.MaxVarintLen32 + len(m)
	}
	return c.ProduceBatch(ctx, topic, part, producer, seq, brokerapi.AppendBatch(make([]byte, 0, n), msgs...))
}

// ProduceBatch is Produce for messages already encoded with brokerapi.AppendBatch (a
// caller sending the same messages again need not encode them again).
func (c *Client) ProduceBatch(ctx context.Context, topic string, part int, producer string, seq uint64, body []byte) (brokerapi.ProduceReply, error) {
	q := url.Values{"topic": {topic}, "partition": {strconv.Itoa(part)}}
	if producer != "" {
		q.Set("producer_id", producer)
		q.Set("seq", strconv.FormatUint(seq, 10))
	}
	var r brokerapi.ProduceReply
	err := c.sendToLeader(ctx, topic, part, "/produce?"+q.Encode(), brokerapi.MIMEBatch, body, &r)
	return r, err
}

// Register registers a consumer.
func (c *Client) Register(ctx context.Context, topic string, part int, consumer string) (uint64, error) {
	var r brokerapi.RegisterReply
	err := c.onLeader(ctx, topic, part, "/consumers",
		brokerapi.RegisterRequest{Topic: topic, Partition: &part, ConsumerID: consumer}, &r)
	return r.Offset, err
}

// Consume takes up to max messages from offset (the consumer's expected position).
// No messages left is an empty reply, not an error.
func (c *Client) Consume(ctx context.Context, topic string, part int, consumer string, offset uint64, max int) (brokerapi.ConsumeReply, error) {
	var r brokerapi.ConsumeReply
	err := c.onLeader(ctx, topic, part, "/consume",
		brokerapi.ConsumeRequest{Topic: topic, Partition: &part, ConsumerID: consumer, Offset: &offset, Max: max}, &r)
	var e *Error
	if errors.As(err, &e) && e.Reason == brokerapi.CodeEmpty {
		return brokerapi.ConsumeReply{Offset: offset, Next: offset}, nil
	}
	return r, err
}
