package clientlib

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/quorumq/quorumq/broker/brokerapi"
	"github.com/quorumq/quorumq/internal/httpjson"
	"github.com/quorumq/quorumq/manager/managerapi"
)

// Producing straight to partition leaders (DESIGN.md, "Data flow → Produce"): the
// managers' metadata names each partition's leader and the brokers' addresses; a
// producer sends its batches there, with the producer name and per-partition seq the
// managers would have used ("p<id>", manager.producerName), so a batch is stored once
// whichever way its attempts take. The managers stay the path when the brokers cannot
// be reached from here, and for everything but produce.

// noLeaderStatus is what a broker answers while a partition elects a leader.
const noLeaderStatus = http.StatusServiceUnavailable

// appendBatch is brokerapi.AppendBatch over records.
func appendBatch(buf []byte, msgs []Record) []byte {
	for _, m := range msgs {
		buf = brokerapi.AppendMessage(buf, m.Value)
	}
	return buf
}

// brokerError is a failure reply of a broker.
type brokerError struct {
	addr   string
	status int
	msg    string
	leader string // on a 421: the leader's HTTP address, or its id when the broker gave no address
	byID   bool   // leader is an id
}

func (e *brokerError) Error() string {
	return fmt.Sprintf("broker %s: %s (HTTP %d)", e.addr, e.msg, e.status)
}

// clientFault mirrors the managers' rule (manager/brokers.go): a 4xx other than 404
// (no replica here: moved, being created) and 421 (not the leader) is about what was
// sent, and no retry changes it. The caller gets the same error the managers would
// have passed on.
func (e *brokerError) clientFault() error {
	if e.status == http.StatusNotFound || e.status == http.StatusMisdirectedRequest ||
		e.status == http.StatusTooManyRequests || e.status < 400 || e.status >= 500 {
		return nil
	}
	return withOutcome{newAPIError(e.status, "broker "+e.addr+": "+e.msg, "invalid", outcomeNotApplied), ErrNotApplied}
}

// directRetry is how long a client that reached no broker at all sends through the
// managers before trying the brokers again (doubling while it keeps failing, up to
// maxDirectRetry): they may sit on addresses this client cannot reach (another
// network, a container's name), and a blackholed address costs a dial timeout.
const (
	directRetry    = 10 * time.Second
	maxDirectRetry = 5 * time.Minute
)

// brokerDir maps broker ids to HTTP addresses, from the managers' GET /brokers.
type brokerDir struct {
	mu      sync.Mutex
	brokers map[string]managerapi.BrokerInfo
	fetched time.Time
	down    time.Time     // when a send last reached no broker
	downFor time.Duration // how long direct sends are off after that; 0 while they work
}

// usable reports whether sending straight to the brokers is worth trying.
func (d *brokerDir) usable() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return time.Since(d.down) > d.downFor
}

// reached records whether a send reached a broker.
func (d *brokerDir) reached(ok bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	switch {
	case ok:
		d.downFor = 0
	case d.downFor == 0:
		d.down, d.downFor = time.Now(), directRetry
	default:
		d.down, d.downFor = time.Now(), min(2*d.downFor, maxDirectRetry)
	}
}

// lookup returns the addresses of the brokers ids that may serve, asking the managers
// when one is unknown or force is set (at most once per second: a manager without GET
// /brokers, or one that is failing over, is not asked at every send).
func (d *brokerDir) lookup(ctx context.Context, c *Client, ids []string, force bool) []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	missing := force
	for _, id := range ids {
		if _, ok := d.brokers[id]; !ok {
			missing = true
		}
	}
	if missing && time.Since(d.fetched) > 4*minRefreshGap {
		d.fetched = time.Now()
		ctx, cancel := context.WithTimeout(ctx, refreshTimeout)
		var r managerapi.BrokersReply
		if c.do(ctx, call{method: http.MethodGet, path: "/brokers", out: &r}) == nil {
			d.brokers = make(map[string]managerapi.BrokerInfo, len(r.Brokers))
			for _, b := range r.Brokers {
				d.brokers[b.ID] = b
			}
		}
		cancel()
	}
	out := make([]string, 0, len(ids))
	for _, id := range ids {
		// Dead and released brokers are not asked, as the managers do not ask them.
		if b := d.brokers[id]; b.Addr != "" && b.State != "dead" && b.State != "released" {
			out = append(out, b.Addr)
		}
	}
	return out
}

// errNoDirect: this batch cannot go straight to a broker (the metadata names no
// broker for the partition, or none was reachable); it goes through a manager.
var errNoDirect = errors.New("quorumq: no direct route to the partition")

// directName is the producer's name on the partitions, as the managers give it
// (manager.producerName).
func directName(id uint64) string { return "p" + strconv.FormatUint(id, 10) }

// candidates lists the addresses to try for partition part, best first: the leader a
// broker last named, the leader of the metadata, then the other replicas (which name
// the leader when they are not it).
func (p *Producer) candidates(ctx context.Context, part int, force bool) ([]string, error) {
	info, ok, err := p.meta.partition(ctx, part, force)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, errNoDirect // the managers answer for a partition we do not know
	}
	var ids []string
	if info.Leader != "" {
		ids = append(ids, info.Leader)
	}
	for _, r := range info.Replicas {
		if r != info.Leader {
			ids = append(ids, r)
		}
	}
	if len(ids) == 0 {
		return nil, errNoDirect
	}
	out := p.c.brokers.lookup(ctx, p.c, ids, force)
	if l := p.meta.leader(part); l != "" {
		out = append([]string{l}, out...)
	}
	if len(out) == 0 {
		return nil, errNoDirect
	}
	return out, nil
}

// sendDirect sends one encoded batch to the partition's leader, following leadership
// (421s, metadata refreshes) and retrying the same seq until it is acknowledged, fails
// for what was sent, or ctx ends. errNoDirect means no broker could be reached: the
// caller sends the batch through a manager, with the same seq.
func (p *Producer) sendDirect(ctx context.Context, part int, seq uint64, body []byte) (brokerapi.ProduceReply, error) {
	q := url.Values{"topic": {p.topic}, "partition": {strconv.Itoa(part)},
		"producer_id": {directName(p.id)}, "seq": {strconv.FormatUint(seq, 10)}}
	path := "/produce?" + q.Encode()
	b := p.c.backoff()
	force := false
	var last error
	for {
		cands, err := p.candidates(ctx, part, force)
		if err != nil {
			return brokerapi.ProduceReply{}, err
		}
		reached := false
		tried := map[string]bool{}
		for len(cands) > 0 {
			addr := cands[0]
			cands = cands[1:]
			if tried[addr] {
				continue
			}
			tried[addr] = true
			r, err := p.c.brokerProduce(ctx, addr, path, body)
			if err == nil {
				p.meta.setLeader(part, addr)
				p.c.brokers.reached(true)
				return r, nil
			}
			if ctx.Err() != nil {
				break
			}
			last = err
			if p.meta.leader(part) == addr {
				p.meta.setLeader(part, "")
			}
			var be *brokerError
			if !errors.As(err, &be) {
				var op *net.OpError
				reached = reached || !(errors.As(err, &op) && op.Op == "dial")
				continue
			}
			reached = true
			if ferr := be.clientFault(); ferr != nil {
				return brokerapi.ProduceReply{}, ferr
			}
			if be.status == noLeaderStatus {
				break // the others have no leader either: wait for the election
			}
			if be.leader != "" {
				leader := []string{be.leader}
				if be.byID {
					leader = p.c.brokers.lookup(ctx, p.c, leader, false)
				}
				cands = append(leader, cands...)
			}
		}
		if ctx.Err() != nil {
			return brokerapi.ProduceReply{}, p.gaveUp(ctx, part, last)
		}
		if !reached {
			p.c.brokers.reached(false)
			return brokerapi.ProduceReply{}, errNoDirect
		}
		p.c.log.Debug("quorumq: retrying produce", "topic", p.topic, "partition", part, "seq", seq, "err", last)
		force = true
		if b.Wait(ctx) != nil {
			return brokerapi.ProduceReply{}, p.gaveUp(ctx, part, last)
		}
	}
}

// gaveUp is the error of a send whose context ended: the context's error, and the last
// answer a broker gave, which says why it never worked.
func (p *Producer) gaveUp(ctx context.Context, part int, last error) error {
	if last == nil {
		return fmt.Errorf("quorumq: produce to %s/%d: %w", p.topic, part, ctx.Err())
	}
	return fmt.Errorf("quorumq: produce to %s/%d: %w (last error: %w)", p.topic, part, ctx.Err(), last)
}

// brokerProduce is one attempt: POST /produce with the binary body to addr.
func (c *Client) brokerProduce(ctx context.Context, addr, path string, body []byte) (brokerapi.ProduceReply, error) {
	if c.requestTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.requestTimeout)
		defer cancel()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.scheme+"://"+addr+path, bytes.NewReader(body))
	if err != nil {
		return brokerapi.ProduceReply{}, err
	}
	req.Header.Set("Content-Type", brokerapi.MIMEBatch)
	c.authorize(req)
	var f brokerapi.Failure
	resp, data, err := httpjson.Do(c.http, req, &f)
	if err != nil {
		return brokerapi.ProduceReply{}, err
	}
	if resp.StatusCode != http.StatusOK {
		e := &brokerError{addr: addr, status: resp.StatusCode, msg: f.Message}
		if l := f.Leader; l != nil && resp.StatusCode == http.StatusMisdirectedRequest {
			e.leader = l.HTTPAddr
			if e.leader == "" {
				e.leader, e.byID = l.ID, true
			}
		}
		return brokerapi.ProduceReply{}, e
	}
	var r brokerapi.ProduceReply
	if err := json.Unmarshal(data, &r); err != nil {
		return brokerapi.ProduceReply{}, fmt.Errorf("quorumq: broker %s: undecodable produce reply %q: %w", addr, truncate(data), err)
	}
	return r, nil
}
