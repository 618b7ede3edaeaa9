package pgstore

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/uptrace/bun"

	"github.com/quorumq/quorumq/manager/meta"
)

// The database follows the in-memory state in the background. An entry is durable
// once Raft has committed it (a majority of managers hold it in their logs), so Apply
// need not wait for PostgreSQL: when it did, every metadata write waited for a
// transaction and its fsync behind the ones before it (creating 2,000 topics with 4
// clients: 30 ms per transaction at the median, up to a second under load). What the
// database lacks after a crash is applied again at restart, from the Raft log or a
// snapshot, as before: the tables always say which index they reflect.
type writer struct {
	mu       sync.Mutex
	next     *pending      // what the database lacks; nil when nothing
	progress chan struct{} // closed (and replaced) at each write

	wake chan struct{} // cap 1: next is set
	stop chan struct{} // closed by Close: write what is pending, then exit
	done chan struct{} // closed when the write loop has exited
	once sync.Once

	// tx is held while a write runs: Restore and Reset take it to replace the
	// tables with nothing older in flight.
	tx      sync.Mutex
	written atomic.Uint64 // the index the tables reflect
}

// pending is the entries applied since the last write: copies of the entities they
// changed, as the last of them left them, and its index.
type pending struct {
	img  *meta.State
	ch   changeSet
	last uint64
}

// closeWait bounds how long Close lets the write loop finish what is pending when
// PostgreSQL does not answer; what is left is applied again at the next start.
const closeWait = 5 * time.Second

func (w *writer) start(s *Store) {
	w.progress = make(chan struct{})
	w.wake = make(chan struct{}, 1)
	w.stop = make(chan struct{})
	w.done = make(chan struct{})
	go func() {
		defer close(w.done)
		for {
			select {
			case <-w.wake:
				s.writePending()
			case <-w.stop:
				s.writePending()
				return
			}
		}
	}()
}

// add records, for the next write, what the entries up to last changed in st.
func (w *writer) add(st *meta.State, ch meta.Changes, last uint64) {
	w.mu.Lock()
	if w.next == nil {
		w.next = &pending{img: meta.NewState()}
	}
	st.CopyChanged(w.next.img, ch)
	w.next.ch.add(ch)
	w.next.last = last
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// reset drops what is pending and marks the tables as reflecting index; the caller
// holds tx.
func (w *writer) reset(index uint64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.next = nil
	w.wrote(index)
}

// wrote records that the tables reflect index; the caller holds mu.
func (w *writer) wrote(index uint64) {
	w.written.Store(index)
	close(w.progress)
	w.progress = make(chan struct{})
}

// close lets the write loop finish what is pending (for at most closeWait) and stops it.
func (w *writer) close(cancelRetries context.CancelFunc) {
	w.once.Do(func() {
		close(w.stop)
		select {
		case <-w.done:
		case <-time.After(closeWait):
		}
		cancelRetries()
		<-w.done
	})
}

// writePending writes what is pending in one transaction, retrying until it lands or
// the store closes (then the Raft log still holds it).
func (s *Store) writePending() {
	w := &s.w
	w.tx.Lock()
	defer w.tx.Unlock()
	w.mu.Lock()
	p := w.next
	w.next = nil
	w.mu.Unlock()
	if p == nil {
		return
	}
	err := s.retry(func(ctx context.Context) error {
		return s.db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
			return writeChanges(ctx, tx, p.img, p.ch.Changes, p.last)
		})
	})
	if err != nil {
		return
	}
	w.mu.Lock()
	w.wrote(p.last)
	w.mu.Unlock()
}

// Sync waits until the tables reflect every entry applied before the call.
func (s *Store) Sync(ctx context.Context) error {
	s.mu.RLock()
	target := s.applied
	s.mu.RUnlock()
	for {
		s.w.mu.Lock()
		progress := s.w.progress
		s.w.mu.Unlock()
		if s.w.written.Load() >= target {
			return nil
		}
		select {
		case <-progress:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
