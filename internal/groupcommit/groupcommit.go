// Package groupcommit is the group commit of the broker's write-ahead log, of its bolt
// files and of the ATMs' Raft proposals: writers from any number of goroutines queue
// requests, and a committer commits whatever is queued as one batch, so one commit (an
// fsync, a Raft entry) serves every writer that waited for it, with no delay added when
// only one writes. Each user says what a commit is and answers its requests; Loop is
// the whole committer of the broker's files, Gather the gathering of one batch.
package groupcommit

import "sync"

// Loop queues requests of type R for one committer goroutine.
type Loop[R any] struct {
	max  int
	reqs chan R

	mu        sync.RWMutex // held (shared) while queueing, so Close knows no request is on its way
	closed    bool
	closeOnce sync.Once
	closing   chan struct{}
	stopped   chan struct{}
}

// New returns a Loop that commits at most max requests at a time; Start starts it.
func New[R any](max int) *Loop[R] {
	return &Loop[R]{max: max, reqs: make(chan R, max), closing: make(chan struct{}), stopped: make(chan struct{})}
}

// Start runs the committer: commit gets each batch, requests in the order they were
// queued (commit must not keep the slice); after, when set, runs once each batch is
// committed (a pause before the next, a chore) and should return early once closing
// is closed.
func (l *Loop[R]) Start(commit func(batch []R), after func(closing <-chan struct{})) {
	go l.run(commit, after)
}

// Queue hands r to the committer, waiting while max requests are already queued. It
// reports false once Close has begun: r will never be committed.
func (l *Loop[R]) Queue(r R) bool {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		return false
	}
	l.reqs <- r
	return true
}

// Closing is closed once Close begins.
func (l *Loop[R]) Closing() <-chan struct{} { return l.closing }

// Close refuses new requests, commits those already queued and waits for the
// committer to stop.
func (l *Loop[R]) Close() {
	l.closeOnce.Do(func() {
		l.mu.Lock()
		l.closed = true
		l.mu.Unlock()
		close(l.closing)
	})
	<-l.stopped
}

func (l *Loop[R]) run(commit func([]R), after func(<-chan struct{})) {
	defer close(l.stopped)
	batch := make([]R, 0, l.max)
	for {
		var ok bool
		if batch, ok = Gather(l.reqs, l.closing, batch, l.max); !ok {
			l.drain(batch, commit)
			return
		}
		commit(batch)
		if after != nil {
			after(l.closing)
		}
	}
}

// drain commits what is still queued at Close (nothing can be added any more).
func (l *Loop[R]) drain(batch []R, commit func([]R)) {
	for {
		select {
		case r := <-l.reqs:
			batch = append(batch, r)
			if len(batch) < l.max {
				continue
			}
		default:
		}
		if len(batch) == 0 {
			return
		}
		commit(batch)
		batch = batch[:0]
	}
}

// Gather reuses batch for the next batch: it waits for a first request on queue, then
// takes what else is queued without waiting, up to max in all. It returns false, and
// an empty batch, if stop is closed before a first request comes.
func Gather[R any](queue <-chan R, stop <-chan struct{}, batch []R, max int) ([]R, bool) {
	batch = batch[:0]
	select {
	case r := <-queue:
		batch = append(batch, r)
	case <-stop:
		return batch, false
	}
	for len(batch) < max {
		select {
		case r := <-queue:
			batch = append(batch, r)
		default:
			return batch, true
		}
	}
	return batch, true
}
