package broker

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/quorumq/quorumq/broker/partition"
)

// Group commit limits: a Raft entry carries every produce waiting for the partition,
// up to maxEntryBytes (a produce that would take it past that waits for the next
// entry), and at most inFlight entries per partition are being replicated at once.
// While they are, new produces queue up and form the next, bigger entry.
// Measured (3 brokers, 64 producers, 1 KiB): one entry in flight beat 2 and 4, since
// fewer, bigger entries cost raft less per message than more entries in parallel.
const (
	maxEntryBytes = 4 << 20
	inFlight      = 1
	queueLen      = 4096
	applyTimeout  = 10 * time.Second
)

// produceReq is one produce waiting for the group commit. Its messages alias the
// request body, which the HTTP server reuses once the handler returns: the group
// commit copies them into the entry (their one copy on the leader's way in), and a
// producer that stops waiting either withdraws its request before that or waits until
// the copy is made.
type produceReq struct {
	batch   partition.Batch
	size    int           // partition.ProduceSize(batch)
	state   atomic.Int32  // reqQueued, then reqTaken (group commit) or reqWithdrawn (producer)
	encoded chan struct{} // closed once taken and copied into the entry
	done    chan produceResult
}

const (
	reqQueued int32 = iota
	reqTaken
	reqWithdrawn
)

type produceResult struct {
	res partition.ProduceResult
	err error
}

var errClosing = errors.New("replica is closing")

// produce queues a batch for the next group commit and waits for its outcome. The
// batch's messages may alias a buffer the caller reuses once produce returns: after a
// timeout, produce returns only once the group commit can no longer read them (the
// entry may still be made).
func (r *replica) produce(ctx context.Context, b partition.Batch) (partition.ProduceResult, error) {
	q := &produceReq{batch: b, size: partition.ProduceSize(b), encoded: make(chan struct{}), done: make(chan produceResult, 1)}
	if n := partition.ProduceOverhead + q.size; n > maxEntryBytes {
		return partition.ProduceResult{}, failf(http.StatusRequestEntityTooLarge,
			"a batch of %d messages takes %d bytes in a Raft entry, which carries at most %d: send smaller batches", len(b.Msgs), n, maxEntryBytes)
	}
	select {
	case r.produceQueue() <- q:
	case <-r.ctx.Done():
		return partition.ProduceResult{}, errClosing
	case <-ctx.Done():
		return partition.ProduceResult{}, ctx.Err()
	}
	r.pump()
	select {
	case res := <-q.done:
		return res.res, res.err
	case <-ctx.Done():
		if !q.state.CompareAndSwap(reqQueued, reqWithdrawn) {
			<-q.encoded // being copied into an entry right now
		}
		return partition.ProduceResult{}, ctx.Err()
	}
}

// pump is the group commit. A producer that finds no entry in flight proposes one
// itself, with everything queued, so a lone producer's request goes from its handler
// to Raft and back without waking another goroutine (each hand-off cost a thread
// wake-up: context switches were a third of a leader's CPU at one producer). What
// queues while an entry is in flight is proposed next, by a goroutine started when
// that entry is done: no handler waits on other producers' entries after its own.
func (r *replica) pump() {
	select {
	case r.slots <- struct{}{}:
	default:
		return // the entry in flight pumps again when it is done
	}
	reqs := r.take()
	if len(reqs) > 0 {
		r.propose(reqs)
	}
	<-r.slots
	if r.waiting() && r.ctx.Err() == nil {
		go r.pump() // queued while the entry was in flight (or while the slot was being given back)
	}
}

// produceQueue is the replica's queue of produces, made on the first produce: a queue
// is queueLen pointers (32 KiB), and a broker holding 6,000 replicas, most of them
// followers or idle, kept 183 MB of them, more than half its heap, which every garbage
// collection scanned (the marking of one collection took 538 ms of CPU with them, 277
// ms without).
func (r *replica) produceQueue() chan *produceReq {
	r.queueOnce.Do(func() { r.queue = make(chan *produceReq, queueLen) })
	return r.queue
}

func (r *replica) waiting() bool {
	r.pumpMu.Lock()
	defer r.pumpMu.Unlock()
	return r.next != nil || len(r.produceQueue()) > 0
}

// take removes what the next entry carries from the queue: everything queued, up to
// maxEntryBytes.
func (r *replica) take() []*produceReq {
	r.pumpMu.Lock()
	defer r.pumpMu.Unlock()
	var reqs []*produceReq
	size := partition.ProduceOverhead
	for {
		q := r.next
		if q == nil {
			select {
			case q = <-r.produceQueue():
			default:
				return reqs
			}
		}
		r.next = nil
		if len(reqs) > 0 && size+q.size > maxEntryBytes {
			r.next = q // the first of the next entry: entries stay within raft's frames
			return reqs
		}
		reqs = append(reqs, q)
		size += q.size
	}
}

// propose encodes the batches of queued requests that their producers still wait
// for into one entry, replicates it and answers them.
func (r *replica) propose(queued []*produceReq) {
	r.closing.RLock()
	defer r.closing.RUnlock()
	if r.ctx.Err() != nil {
		for _, q := range queued {
			q.done <- produceResult{err: errClosing}
		}
		return
	}
	reqs := queued[:0]
	batches := make([]partition.Batch, 0, len(queued))
	for _, q := range queued {
		if q.state.CompareAndSwap(reqQueued, reqTaken) {
			reqs = append(reqs, q)
			batches = append(batches, q.batch)
		}
	}
	if len(reqs) == 0 {
		return
	}
	cmd := partition.StampProduce(partition.EncodeProduce(batches), time.Now())
	for _, q := range reqs {
		close(q.encoded)
	}
	ctx, cancel := context.WithTimeout(r.ctx, applyTimeout) // a closing replica gives up on its entries
	defer cancel()
	start := time.Now()
	out, err := r.node.Apply(ctx, cmd)
	if err == nil {
		commitSeconds.Observe(time.Since(start).Seconds())
	}
	var rs []partition.ProduceResult
	if err == nil {
		if rs, err = partition.DecodeProduceResults(out); err == nil && len(rs) != len(reqs) {
			err = fmt.Errorf("partition answered %d results for %d batches", len(rs), len(reqs))
		}
	}
	for i, q := range reqs {
		if err != nil {
			q.done <- produceResult{err: err}
		} else {
			q.done <- produceResult{res: rs[i]}
		}
	}
}
