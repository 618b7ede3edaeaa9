package atm

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/quorumq/quorumq/atm/bank"
)

// ErrUnavailable is what every operation returns when the group could not confirm it in
// time: no leader, or no majority to commit.
var ErrUnavailable = errors.New("no quorum: the ATM network did not confirm in time (a majority of ATMs must be up)")

// applyFunc commits one Raft entry and returns the FSM's answer (election.Node.Apply).
type applyFunc func(ctx context.Context, entry []byte) ([]byte, error)

// batcher is the group commit: operations submitted concurrently are coalesced into one
// bank.Batch entry. Each lane owns one session of the exactly-once table and has at most
// one entry in flight, so a failed Apply can be retried with the same sequence number and
// the FSM answers the retry from its table instead of applying twice.
type batcher struct {
	apply    applyFunc
	id       string
	lanes    int
	maxBatch int
	timeout  time.Duration
	logger   *slog.Logger
	queue    chan *request
	wg       sync.WaitGroup
	sizes    prometheus.Histogram // operations per entry, served on /metrics
}

type request struct {
	ctx  context.Context
	op   bank.Op
	done chan reply // buffered: a lane never blocks on a caller that gave up
}

type reply struct {
	res bank.Result
	err error
}

func newBatcher(apply applyFunc, id string, lanes, maxBatch int, timeout time.Duration, logger *slog.Logger) *batcher {
	return &batcher{apply: apply, id: id, lanes: lanes, maxBatch: maxBatch, timeout: timeout, logger: logger,
		queue: make(chan *request, lanes*maxBatch), sizes: newBatchSizes()}
}

// start runs the lanes until ctx is done; wait blocks until they have exited.
func (b *batcher) start(ctx context.Context) {
	// Sequence numbers start at the clock so that a restarted ATM (which forgot its
	// counter) still moves forward in its sessions instead of being refused as stale.
	start := uint64(time.Now().UnixNano())
	for lane := range b.lanes {
		b.wg.Add(1)
		go func() {
			defer b.wg.Done()
			b.runLane(ctx, fmt.Sprintf("%s/%d", b.id, lane), start)
		}()
	}
}

func (b *batcher) wait() { b.wg.Wait() }

// do submits op and waits for its result, for ctx, or for the batch to fail.
func (b *batcher) do(ctx context.Context, op bank.Op) (bank.Result, error) {
	r := &request{ctx: ctx, op: op, done: make(chan reply, 1)}
	select {
	case b.queue <- r:
	case <-ctx.Done():
		return bank.Result{}, unavailable(ctx.Err())
	}
	select {
	case rep := <-r.done:
		return rep.res, rep.err
	case <-ctx.Done():
		return bank.Result{}, unavailable(ctx.Err())
	}
}

func unavailable(err error) error {
	if errors.Is(err, context.DeadlineExceeded) {
		return ErrUnavailable
	}
	return err
}

func (b *batcher) runLane(ctx context.Context, session string, seq uint64) {
	// Both slices are reused from batch to batch: every reply is sent, and the entry
	// encoded, before the next batch is gathered.
	reqs := make([]*request, 0, b.maxBatch)
	ops := make([]bank.Op, 0, b.maxBatch)
	for {
		reqs = reqs[:0]
		select {
		case r := <-b.queue:
			reqs = append(reqs, r)
		case <-ctx.Done():
			return
		}
	fill:
		for len(reqs) < b.maxBatch {
			select {
			case r := <-b.queue:
				reqs = append(reqs, r)
			default:
				break fill
			}
		}
		// Requests whose caller already gave up are dropped rather than applied, so a
		// timed-out caller's operation does not happen behind its back.
		live := reqs[:0]
		for _, r := range reqs {
			if r.ctx.Err() == nil {
				live = append(live, r)
			}
		}
		if len(live) == 0 {
			continue
		}
		b.sizes.Observe(float64(len(live)))
		seq++
		ops = ops[:0]
		for _, r := range live {
			ops = append(ops, r.op)
		}
		br, err := b.commit(ctx, bank.Batch{Session: session, Seq: seq, Ops: ops}.Encode())
		for i, r := range live {
			switch {
			case err != nil:
				r.done <- reply{err: err}
			case br.Code != bank.OK:
				r.done <- reply{err: br.Code.Err()}
			case i >= len(br.Results):
				r.done <- reply{err: fmt.Errorf("%w: %d results for %d ops", bank.ErrMalformed, len(br.Results), len(live))}
			default:
				r.done <- reply{res: br.Results[i]}
			}
		}
	}
}

// commit applies one entry, retrying the same bytes (same session and sequence number)
// until it is answered or the timeout passes. Retrying is safe only because the FSM
// remembers the last result of each session.
func (b *batcher) commit(ctx context.Context, entry []byte) (bank.BatchResult, error) {
	ctx, cancel := context.WithTimeout(ctx, b.timeout)
	defer cancel()
	backoff := 20 * time.Millisecond
	for {
		out, err := b.apply(ctx, entry)
		if err == nil {
			return bank.DecodeBatchResult(out)
		}
		b.logger.Debug("batch apply failed; retrying", "err", err)
		select {
		case <-ctx.Done():
			return bank.BatchResult{}, fmt.Errorf("%w (last error: %v)", unavailable(ctx.Err()), err)
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 500*time.Millisecond)
	}
}
