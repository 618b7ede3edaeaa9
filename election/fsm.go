package election

import (
	"errors"
	"fmt"
	"io"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
)

// Raft's own AppliedIndex moves when an entry is handed to the FSM goroutine, not when the
// FSM has applied it, so reads could see a stale FSM. trackedFSM records the index the FSM
// really reached: commands and configuration entries (it implements ConfigurationStore so
// raft hands those over too), and the snapshot index after a Restore.
type trackedFSM struct {
	inner   raft.FSM
	snaps   *trackedSnapshots
	applied atomic.Uint64

	// Raft snapshots by entry count, checked every SnapshotInterval; entries of a busy
	// partition are group commits of up to MiBs, so its log (and the disk it takes)
	// would grow by seconds of traffic between checks. snapshotBytes asks for a
	// snapshot as soon as that many command bytes were applied since the last request,
	// snapshotEntries once that many entries were, snapshotGap after the last request
	// at the soonest (Timing.SnapshotGap).
	snapshotBytes   uint64
	snapshotEntries uint64
	snapshotGap     time.Duration
	snapshot        func() // takes a snapshot (on its own goroutine, never the FSM's)
	sinceSnapshot   atomic.Uint64
	entriesSince    atomic.Uint64
	lastAsked       atomic.Int64 // unix nanos of the last request
	snapshotting    atomic.Bool

	// kept is the last entry the FSM held when raft restarted in-process (restart.go):
	// the new run replays the log from its latest snapshot, and those entries, committed
	// and so the same, are in the FSM already. Process restarts start from a new FSM.
	kept atomic.Uint64

	// check says whether this binary knows a command (nil: the FSM does not say); the
	// first it does not know halts the member through stop, and haltErr is set.
	check   func(cmd []byte) error
	stop    func(index uint64, err error)
	haltErr atomic.Pointer[error]
}

// batchingFSM keeps an inner BatchingFSM's batches intact.
type batchingFSM struct{ *trackedFSM }

func newTrackedFSM(inner raft.FSM, snaps *trackedSnapshots, stop func(index uint64, err error)) *trackedFSM {
	t := &trackedFSM{inner: inner, snaps: snaps, stop: stop}
	if cc, ok := inner.(CommandChecker); ok {
		t.check = cc.CheckCommand
	}
	return t
}

// known returns how many of logs the FSM may apply: all of them, or those before the
// first command this binary does not know, which halts the member.
func (t *trackedFSM) known(logs []*raft.Log) int {
	if t.haltErr.Load() != nil {
		return 0
	}
	if t.check == nil {
		return len(logs)
	}
	for i, l := range logs {
		if l.Type != raft.LogCommand {
			continue
		}
		if err := t.check(l.Data); err != nil {
			herr := fmt.Errorf("%w: entry %d holds a command this binary does not know (%w); it applies nothing more until restarted with a binary that knows it", ErrHalted, l.Index, err)
			t.haltErr.Store(&herr)
			t.stop(l.Index, err)
			return i
		}
	}
	return len(logs)
}

// halted is the response to an entry not applied, or nil while the member applies.
func (t *trackedFSM) halted() error {
	if p := t.haltErr.Load(); p != nil {
		return *p
	}
	return nil
}

// raftFSM is what raft gets: batching only when the inner FSM batches.
func (t *trackedFSM) raftFSM() raft.FSM {
	if _, ok := t.inner.(raft.BatchingFSM); ok {
		return batchingFSM{t}
	}
	return t
}

func (t *trackedFSM) Apply(l *raft.Log) any {
	if l.Index <= t.kept.Load() {
		return nil
	}
	if t.known([]*raft.Log{l}) == 0 {
		return t.halted()
	}
	resp := t.inner.Apply(l)
	t.applied.Store(l.Index)
	t.grew(1, len(l.Data))
	return resp
}

func (b batchingFSM) ApplyBatch(logs []*raft.Log) []any {
	old := 0
	for kept := b.kept.Load(); old < len(logs) && logs[old].Index <= kept; old++ {
	}
	if old > 0 {
		resp := make([]any, old, len(logs)) // nothing waits for a replayed entry's result
		if old < len(logs) {
			resp = append(resp, b.ApplyBatch(logs[old:])...)
		}
		return resp
	}
	return b.applyKnown(logs)
}

// applyKnown applies the entries before the first unknown command, and answers the
// rest with the halt.
func (b batchingFSM) applyKnown(logs []*raft.Log) []any {
	known := b.known(logs)
	if known == len(logs) {
		return b.apply(logs)
	}
	resp := make([]any, len(logs))
	if known > 0 {
		copy(resp, b.apply(logs[:known]))
	}
	for i := known; i < len(logs); i++ {
		resp[i] = b.halted()
	}
	return resp
}

func (b batchingFSM) apply(logs []*raft.Log) []any {
	resp := b.inner.(raft.BatchingFSM).ApplyBatch(logs)
	if len(logs) > 0 {
		b.applied.Store(logs[len(logs)-1].Index)
	}
	if b.snapshotBytes > 0 || b.snapshotEntries > 0 {
		n := 0
		for _, l := range logs {
			n += len(l.Data)
		}
		b.grew(len(logs), n)
	}
	return resp
}

// grew counts applied entries and command bytes and starts a snapshot once
// snapshotBytes or snapshotEntries are reached (the latter snapshotGap after the last
// request at the soonest), unless one it started is still waiting or running.
func (t *trackedFSM) grew(entries, n int) {
	bytesDue := t.snapshotBytes > 0 && t.sinceSnapshot.Add(uint64(n)) >= t.snapshotBytes
	entriesDue := t.snapshotEntries > 0 && t.entriesSince.Add(uint64(entries)) >= t.snapshotEntries
	if !bytesDue && !entriesDue || !t.snapshotting.CompareAndSwap(false, true) {
		return
	}
	var wait time.Duration
	if !bytesDue {
		wait = t.snapshotGap - time.Since(time.Unix(0, t.lastAsked.Load()))
	}
	go func() {
		defer t.snapshotting.Store(false)
		if wait > 0 {
			time.Sleep(wait) // a snapshot of a closed node fails harmlessly
		}
		t.sinceSnapshot.Store(0)
		t.entriesSince.Store(0)
		t.lastAsked.Store(time.Now().UnixNano())
		t.snapshot()
	}()
}

func (t *trackedFSM) StoreConfiguration(index uint64, c raft.Configuration) {
	if index <= t.kept.Load() {
		return
	}
	if cs, ok := t.inner.(raft.ConfigurationStore); ok {
		cs.StoreConfiguration(index, c)
	}
	if t.halted() == nil {
		t.applied.Store(index)
	}
}

// Snapshot refuses while halted: raft would record the snapshot at its own applied
// index, past the entries the FSM skipped, and then drop them from the log.
func (t *trackedFSM) Snapshot() (raft.FSMSnapshot, error) {
	if err := t.halted(); err != nil {
		return nil, err
	}
	return t.inner.Snapshot()
}

// Restore refuses while halted: the snapshot comes from members that know commands
// this binary does not, so its state may not be one this binary can hold.
func (t *trackedFSM) Restore(rc io.ReadCloser) error {
	if err := t.halted(); err != nil {
		rc.Close()
		return err
	}
	if t.snaps.opened.Load() <= t.kept.Load() {
		return rc.Close() // the FSM is further along (see kept)
	}
	if err := t.inner.Restore(rc); err != nil {
		return err
	}
	// Raft opens the snapshot it restores right before calling Restore, on the same
	// goroutine, so the last opened snapshot is the one just restored.
	t.applied.Store(t.snaps.opened.Load())
	return nil
}

// trackedSnapshots remembers the index of the last snapshot opened, for trackedFSM.
type trackedSnapshots struct {
	raft.SnapshotStore
	opened atomic.Uint64
}

func (s *trackedSnapshots) Open(id string) (*raft.SnapshotMeta, io.ReadCloser, error) {
	meta, rc, err := s.SnapshotStore.Open(id)
	if err == nil {
		s.opened.Store(meta.Index)
	}
	return meta, rc, err
}

// lastFSMEntry returns the highest index ≤ target that the FSM will see (a command or a
// configuration entry), skipping the no-op and barrier entries raft keeps to itself.
// Entries already compacted away are covered by a snapshot the FSM has, so 0 is returned
// for them.
func lastFSMEntry(logs raft.LogStore, target, applied uint64) (uint64, error) {
	var l raft.Log
	for i := target; i > applied; i-- {
		if err := logs.GetLog(i, &l); err != nil {
			if errors.Is(err, raft.ErrLogNotFound) {
				return 0, nil
			}
			return 0, err
		}
		if l.Type == raft.LogCommand || l.Type == raft.LogConfiguration {
			return i, nil
		}
	}
	return 0, nil
}
