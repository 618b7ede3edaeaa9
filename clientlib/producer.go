package clientlib

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quorumq/quorumq/manager/managerapi"
)

// Record is a message to send.
type Record struct {
	// Key picks the partition: records with the same key go to the same partition and
	// stay in order. Empty: round robin.
	Key   string
	Value string
}

// Position is where a record landed. Offset is -1 when the manager does not say.
type Position struct {
	Partition int
	Offset    int64
}

// Producer sends records to one topic. It picks the partition itself and numbers the
// records of each partition (producer_id + seq), so every retry is recognised by the
// partition as a duplicate instead of being appended twice. Records of one partition
// are sent one request at a time, in order. Safe for concurrent use.
type Producer struct {
	c     *Client
	topic string
	id    uint64 // the managers' producer id
	meta  *topicMeta
	fixed *int
	rr    atomic.Uint64

	batchSize  int
	maxPending int

	pmu   sync.Mutex
	parts map[int]*partSeq

	// asynchronous sends
	amu     sync.Mutex
	closed  bool
	pending map[int][]Record
	kicks   map[int]chan struct{}
	slots   chan struct{} // one per record queued or in flight: bounds memory
	track   tracker
	bg      context.Context
	stop    context.CancelFunc
	senders sync.WaitGroup
}

// partSeq is the next request sequence number of a partition; mu is held for the whole
// send, which keeps a partition's requests in sequence order: the partition only
// recognises a retry of the last request it stored.
type partSeq struct {
	mu   sync.Mutex
	next uint64
}

// ProducerOption configures a Producer.
type ProducerOption func(*Producer)

// ToPartition sends every record to partition p, ignoring keys.
func ToPartition(p int) ProducerOption { return func(pr *Producer) { pr.fixed = &p } }

// WithBatchSize caps the records one asynchronous request carries (default 500).
func WithBatchSize(n int) ProducerOption { return func(p *Producer) { p.batchSize = max(n, 1) } }

// WithMaxPending caps the records SendAsync queues before it blocks (default 10,000).
func WithMaxPending(n int) ProducerOption { return func(p *Producer) { p.maxPending = max(n, 1) } }

// WithMetadataRefresh sets how often the partition count is re-read (default 30s).
func WithMetadataRefresh(d time.Duration) ProducerOption {
	return func(p *Producer) { p.meta.refresh = d }
}

// NewProducer registers a producer for topic; it fails with ErrUnknownTopic if there
// is no such topic.
func (c *Client) NewProducer(ctx context.Context, topic string, opts ...ProducerOption) (*Producer, error) {
	p := &Producer{
		c: c, topic: topic,
		meta:       &topicMeta{admin: c.Admin(), topic: topic, refresh: 30 * time.Second},
		batchSize:  500,
		maxPending: 10000,
		parts:      map[int]*partSeq{},
		pending:    map[int][]Record{},
		kicks:      map[int]chan struct{}{},
	}
	for _, o := range opts {
		o(p)
	}
	if p.fixed == nil {
		if _, err := p.meta.partitions(ctx); err != nil {
			return nil, err
		}
	}
	var r managerapi.ProducerReply
	if err := c.do(ctx, metadataWrite(http.MethodPost, "/producer/register", managerapi.RegisterRequest{Topic: topic}, &r)); err != nil {
		return nil, err
	}
	p.id = r.ProducerID
	p.slots = make(chan struct{}, p.maxPending)
	p.bg, p.stop = context.WithCancel(context.Background())
	return p, nil
}

// ID is the producer id the managers assigned.
func (p *Producer) ID() string { return strconv.FormatUint(p.id, 10) }

func (p *Producer) partition(ctx context.Context, key string) (int, error) {
	if p.fixed != nil {
		return *p.fixed, nil
	}
	n, err := p.meta.partitions(ctx)
	if err != nil {
		return 0, err
	}
	if key != "" {
		h := fnv.New32a()
		h.Write([]byte(key))
		return int(h.Sum32() % uint32(n)), nil
	}
	return int(p.rr.Add(1) % uint64(n)), nil
}

func (p *Producer) seqOf(partition int) *partSeq {
	p.pmu.Lock()
	defer p.pmu.Unlock()
	s := p.parts[partition]
	if s == nil {
		s = &partSeq{}
		p.parts[partition] = s
	}
	return s
}

// send delivers records to one partition as one request: straight to the partition's
// leader broker when it can (direct.go), else through a manager, with the same seq
// either way. A failed send still uses up its sequence number: the records may have
// landed (the reply was lost), and reusing the number would make the partition drop
// the next records as duplicates.
func (p *Producer) send(ctx context.Context, partition int, records []Record) ([]Position, error) {
	ctx, cancel := p.c.bound(ctx)
	defer cancel()
	s := p.seqOf(partition)
	s.mu.Lock()
	defer s.mu.Unlock()
	seq := s.next
	s.next++
	if p.c.direct && p.c.brokers.usable() {
		n := 0
		for _, r := range records {
			n += binary.MaxVarintLen32 + len(r.Value)
		}
		r, err := p.sendDirect(ctx, partition, seq, appendBatch(make([]byte, 0, n), records))
		if err == nil {
			return positions(partition, records, r.Offset), nil
		}
		if !errors.Is(err, errNoDirect) {
			return nil, directOutcome(err)
		}
	}
	req := managerapi.ProduceRequest{Topic: p.topic, ProducerID: p.id, Partition: &partition, Seq: &seq}
	if len(records) == 1 {
		req.Message = &records[0].Value
	} else {
		req.Messages = make([]string, len(records))
		for i, r := range records {
			req.Messages[i] = r.Value
		}
	}
	var r managerapi.ProduceReply
	if err := p.c.do(ctx, call{method: http.MethodPost, path: "/producer/produce", body: req, out: &r, write: true}); err != nil {
		return nil, err
	}
	return positions(partition, records, r.Offset), nil
}

// directOutcome tags a failed send to a broker: not applied only where the broker
// refused what was sent, else unknown (the batch may have been stored; a retry with
// the same seq, which the SDK makes, is safe).
func directOutcome(err error) error {
	if errors.Is(err, ErrNotApplied) || errors.Is(err, ErrOutcomeUnknown) {
		return err
	}
	return withOutcome{err, ErrOutcomeUnknown}
}

// positions are the places of records stored from offset first on.
func positions(partition int, records []Record, first uint64) []Position {
	pos := make([]Position, len(records))
	for i := range pos {
		pos[i] = Position{Partition: partition, Offset: int64(first) + int64(i)}
	}
	return pos
}

// Send sends one record and waits until the partition has it on a majority of disks.
func (p *Producer) Send(ctx context.Context, r Record) (Position, error) {
	part, err := p.partition(ctx, r.Key)
	if err != nil {
		return Position{}, err
	}
	pos, err := p.send(ctx, part, []Record{r})
	if err != nil {
		return Position{}, err
	}
	return pos[0], nil
}

// SendBatch sends records, one request per partition (partitions in parallel), and
// returns their positions in the order given. On error some partitions may have the
// records and others not; sending the same records again through a new Send would
// duplicate them, so callers that need exactly-once keep the error and stop.
func (p *Producer) SendBatch(ctx context.Context, records []Record) ([]Position, error) {
	groups := map[int][]int{} // partition → indexes into records
	for i, r := range records {
		part, err := p.partition(ctx, r.Key)
		if err != nil {
			return nil, err
		}
		groups[part] = append(groups[part], i)
	}
	out := make([]Position, len(records))
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for part, idx := range groups {
		wg.Go(func() {
			batch := make([]Record, len(idx))
			for i, j := range idx {
				batch[i] = records[j]
			}
			pos, err := p.send(ctx, part, batch)
			if err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
				return
			}
			for i, j := range idx {
				out[j] = pos[i]
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return out, nil
}

// SendAsync queues a record and returns at once (it blocks only while WithMaxPending
// records are outstanding). Each partition sends whatever queued up while its previous
// request was in flight as one batch. Flush waits for the queue and reports failures.
func (p *Producer) SendAsync(ctx context.Context, r Record) error {
	part, err := p.partition(ctx, r.Key)
	if err != nil {
		return err
	}
	select {
	case p.slots <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	p.amu.Lock()
	if p.closed {
		p.amu.Unlock()
		<-p.slots
		return ErrClosed
	}
	p.track.add(1)
	p.pending[part] = append(p.pending[part], r)
	kick := p.kicks[part]
	if kick == nil {
		kick = make(chan struct{}, 1)
		p.kicks[part] = kick
		p.senders.Add(1)
		go p.runSender(part, kick)
	}
	p.amu.Unlock()
	select {
	case kick <- struct{}{}:
	default: // the sender is already due to look
	}
	return nil
}

func (p *Producer) runSender(part int, kick chan struct{}) {
	defer p.senders.Done()
	for {
		select {
		case <-kick:
		case <-p.bg.Done():
			return
		}
		for {
			p.amu.Lock()
			q := p.pending[part]
			n := batchLen(q, p.batchSize)
			batch := q[:n:n]
			p.pending[part] = q[n:]
			p.amu.Unlock()
			if n == 0 {
				break
			}
			_, err := p.send(p.bg, part, batch)
			for range n {
				<-p.slots
			}
			p.track.done(n, err)
		}
	}
}

// maxBatchBytes caps the message bytes of one asynchronous request: a broker takes at
// most 4 MiB in one produce (one Raft entry) and answers 413 above that, so 500 records
// of 16 KiB must go as several requests. Half the limit leaves room for the framing
// and for JSON's quoting on the path through a manager.
const maxBatchBytes = 2 << 20

// batchLen is how many of q's first records one request carries: at most maxRecords and
// maxBatchBytes of values, and always at least one (a record too big on its own gets the
// broker's 413 for itself, not for its neighbours).
func batchLen(q []Record, maxRecords int) int {
	n, size := 0, 0
	for n < len(q) && n < maxRecords {
		size += len(q[n].Value)
		if n > 0 && size > maxBatchBytes {
			break
		}
		n++
	}
	return n
}

// Flush waits until every record queued by SendAsync so far has been sent or has
// failed, and returns the failures since the last Flush.
func (p *Producer) Flush(ctx context.Context) error {
	return p.track.wait(ctx)
}

// Close flushes and stops the producer's background senders.
func (p *Producer) Close(ctx context.Context) error {
	p.amu.Lock()
	p.closed = true
	p.amu.Unlock()
	err := p.Flush(ctx)
	p.stop()
	p.senders.Wait()
	return err
}

// tracker counts outstanding asynchronous records and collects their errors.
type tracker struct {
	mu   sync.Mutex
	n    int
	idle chan struct{} // closed when n drops to zero
	errs []error
}

func (t *tracker) add(k int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.n == 0 {
		t.idle = make(chan struct{})
	}
	t.n += k
}

func (t *tracker) done(k int, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if err != nil {
		t.errs = append(t.errs, err)
	}
	t.n -= k
	if t.n == 0 {
		close(t.idle)
	}
}

func (t *tracker) wait(ctx context.Context) error {
	t.mu.Lock()
	idle, n := t.idle, t.n
	t.mu.Unlock()
	if n > 0 {
		select {
		case <-idle:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	err := joinDistinct(t.errs)
	t.errs = nil
	return err
}

// joinDistinct joins errs, each message once with the number of batches that failed
// with it: a refusal that every batch meets (a message over the size limit) is one
// line, not one per batch.
func joinDistinct(errs []error) error {
	var order []string
	first, count := map[string]error{}, map[string]int{}
	for _, e := range errs {
		m := e.Error()
		if count[m] == 0 {
			order = append(order, m)
			first[m] = e
		}
		count[m]++
	}
	out := make([]error, len(order))
	for i, m := range order {
		out[i] = first[m]
		if n := count[m]; n > 1 {
			out[i] = fmt.Errorf("%w (%d batches)", first[m], n)
		}
	}
	return errors.Join(out...)
}
