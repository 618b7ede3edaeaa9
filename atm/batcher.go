package atm

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/quorumq/quorumq/atm/bank"
	"github.com/quorumq/quorumq/election"
	"github.com/quorumq/quorumq/internal/groupcommit"
	"github.com/quorumq/quorumq/internal/retry"
)

// ErrUnavailable is what every operation returns when the group could not confirm it in
// time: no leader, or no majority to commit. Whether a write may still happen is told
// apart by ErrOutcomeUnknown.
var ErrUnavailable = errors.New("no quorum: the ATM network did not confirm in time (a majority of ATMs must be up)")

// ErrOutcomeUnknown matches the error of a write that may still be applied: its entry may
// have reached the Raft log (sent to a leader that did not answer, say) and may commit
// later. Every other failure of a write means it was not applied and never will be.
var ErrOutcomeUnknown = errors.New("outcome unknown: the operation may still be applied")

type unknownOutcome struct{ err error }

func (e *unknownOutcome) Error() string        { return e.err.Error() }
func (e *unknownOutcome) Unwrap() error        { return e.err }
func (e *unknownOutcome) Is(target error) bool { return target == ErrOutcomeUnknown }

// outcomeUnknown marks err as the failure of a write that may still be applied.
func outcomeUnknown(err error) error { return &unknownOutcome{err} }

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
	ctx context.Context
	op  bank.Op
	// state is decided once, by a compare-and-swap, between the lane taking the request
	// into an entry and the caller giving up on it first: so a caller that gives up
	// knows whether its operation can still happen.
	state atomic.Int32
	done  chan reply // buffered: a lane never blocks on a caller that gave up
}

// request states
const (
	queued int32 = iota
	taken
	abandoned
)

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
		if r.state.CompareAndSwap(queued, abandoned) {
			return bank.Result{}, unavailable(ctx.Err()) // no lane will send it
		}
		// A lane is committing it, until the latest deadline of its batch (about this
		// one): only the lane knows whether it may still be applied.
		rep := <-r.done
		return rep.res, rep.err
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
		var ok bool
		if reqs, ok = groupcommit.Gather(b.queue, ctx.Done(), reqs, b.maxBatch); !ok {
			return
		}
		// Requests whose caller already gave up are dropped rather than applied, so a
		// caller told "not applied" is right.
		live := reqs[:0]
		for _, r := range reqs {
			if r.ctx.Err() == nil && r.state.CompareAndSwap(queued, taken) {
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
		// Time only travels in entries with idempotency keys, where it expires old keys.
		br, err := b.commit(ctx, b.deadline(live), bank.Batch{Session: session, Seq: seq, Time: time.Now().UnixNano(), Ops: ops}.Encode())
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

// deadline is when a batch's commit gives up: when its last caller would (its callers
// wait for the lane's answer), and at most the batcher's timeout from now.
func (b *batcher) deadline(reqs []*request) time.Time {
	limit := time.Now().Add(b.timeout)
	var latest time.Time
	for _, r := range reqs {
		d, ok := r.ctx.Deadline()
		if !ok {
			return limit
		}
		if d.After(latest) {
			latest = d
		}
	}
	if latest.After(limit) {
		return limit
	}
	return latest
}

// commit applies one entry, retrying the same bytes (same session and sequence number)
// until it is answered or the deadline passes. Retrying is safe only because the FSM
// remembers the last result of each session. Once an attempt may have put the entry in
// the Raft log, giving up means the outcome is unknown: the entry may still commit.
func (b *batcher) commit(ctx context.Context, deadline time.Time, entry []byte) (bank.BatchResult, error) {
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	backoff := retry.Policy{First: 20 * time.Millisecond, Max: 500 * time.Millisecond}.Start()
	reached := false
	for {
		out, err := b.apply(ctx, entry)
		if err == nil {
			br, err := bank.DecodeBatchResult(out)
			if err != nil {
				return br, outcomeUnknown(err) // applied, but the answer is unreadable
			}
			return br, nil
		}
		reached = reached || mayHaveReachedLog(err)
		b.logger.Debug("batch apply failed; retrying", "err", err)
		if werr := backoff.Wait(ctx); werr != nil {
			err = fmt.Errorf("%w (last error: %v)", unavailable(werr), err)
			if reached {
				return bank.BatchResult{}, outcomeUnknown(err)
			}
			return bank.BatchResult{}, err
		}
	}
}

// mayHaveReachedLog reports whether a failed Apply may have put its entry in the Raft
// log. Only "no leader took it" (the leader unknown or unreachable until the deadline)
// is certain not to have.
func mayHaveReachedLog(err error) bool {
	return errors.Is(err, election.ErrUnknownOutcome) || !errors.Is(err, election.ErrNoLeader)
}
