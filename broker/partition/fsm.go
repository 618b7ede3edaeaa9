// Package partition is the state machine of one partition: an append-only sequence of
// messages plus each consumer's offset and each producer's last batch. It is plain Go
// over a Store interface, so it is tested without disks or networks; broker/internal/store
// keeps it on disk and election replicates its commands.
package partition

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"sync"

	"github.com/hashicorp/raft"

	"github.com/quorumq/quorumq/internal/decode"
)

// Mutation is everything one applied batch of Raft entries changes. The store commits
// it in one transaction, the applied index included, so a restart never applies an
// entry twice and never loses one that was acknowledged as applied.
type Mutation struct {
	Applied   uint64
	First     uint64   // offset of Msgs[0]
	Msgs      [][]byte // new messages, contiguous from First
	Start     uint64   // the first offset kept: the store deletes the messages before it
	Next      uint64
	Bytes     uint64
	Consumers map[string]uint64   // changed consumer offsets
	Producers map[string]Producer // changed producers
	Stamps    []Stamp             // when the entries holding Msgs were proposed
}

// Stamp says that the messages from Offset on were proposed at At (Unix ms, the
// proposer's clock), until the next stamp: the store keeps them so that a leader can
// tell which prefix time-based retention deletes.
type Stamp struct {
	Offset uint64
	At     int64
}

// Store keeps a partition durably.
type Store interface {
	// Load returns the last committed state (NewState for a new partition).
	Load() (State, error)
	// Commit queues a mutation to be applied atomically and durably after every
	// mutation queued before it, and returns a function that waits for the outcome.
	// It must never drop a mutation silently: the entries are committed in Raft and
	// skipping them would fork this replica, so a store that cannot commit stops the
	// process, and the restart re-applies them from the log.
	Commit(m *Mutation) (wait func() error)
	// Fit counts the messages from offset from (exclusive bound to) whose sizes add up
	// to at most maxBytes (always at least one if from < to) and returns their size.
	// Offsets below the partition's start are not there. Apply relies on its answer
	// being every replica's: while sizes it needs are damaged on disk it waits for
	// their repair, and it fails with ErrDropped once the replica is being dropped.
	Fit(from, to, maxBytes uint64) (n, size uint64, err error)
	// Messages returns the n messages from offset from, which must be committed.
	Messages(from uint64, n uint32) ([][]byte, error)
	// Restore replaces the state (the snapshot store already wrote the messages).
	Restore(s State) error
}

// FSM is the partition state machine. Apply is deterministic: results depend only on
// the entries and the state before them.
//
// Apply does not wait for the store to commit: the entries are already durable in the
// Raft log on a majority, and until the store has them they stay in the log (raft
// compacts the log only after a snapshot, and Persist waits for the store first), so a
// crash replays them. That takes one fsync off every acknowledgement. Whatever reads
// the store (consume, snapshots) waits for the pending commit first.
type FSM struct {
	store Store

	mu      sync.RWMutex // guards st and pending against readers outside Raft's FSM goroutine
	st      State
	pending func() error // waits for the last queued commit
}

// New loads the partition's state from store.
func New(store Store) (*FSM, error) {
	st, err := store.Load()
	if err != nil {
		return nil, err
	}
	return &FSM{store: store, st: st}, nil
}

// Apply implements raft.FSM.
func (f *FSM) Apply(l *raft.Log) interface{} {
	return f.ApplyBatch([]*raft.Log{l})[0]
}

// ApplyBatch implements raft.BatchingFSM: every entry raft hands over at once becomes
// one store transaction.
func (f *FSM) ApplyBatch(logs []*raft.Log) []interface{} {
	f.mu.RLock()
	st := f.st // maps are shared; they are only written under the write lock below
	f.mu.RUnlock()
	m := &Mutation{Applied: st.Applied, First: st.Next, Start: st.Start, Next: st.Next, Bytes: st.Bytes,
		Consumers: map[string]uint64{}, Producers: map[string]Producer{}}
	a := applier{st: &st, m: m, store: f.store, flush: f.flush}
	out := make([]interface{}, len(logs))
	for i, l := range logs {
		if l.Index <= m.Applied || l.Type != raft.LogCommand {
			continue // already applied before a restart, or not ours
		}
		out[i] = a.apply(l.Data)
		m.Applied = l.Index
	}
	if m.Applied == st.Applied {
		return out
	}
	wait := f.store.Commit(m)
	f.mu.Lock()
	f.pending = wait
	f.st.Applied, f.st.Start, f.st.Next, f.st.Bytes = m.Applied, m.Start, m.Next, m.Bytes
	for k, v := range m.Consumers {
		f.st.Consumers[k] = v
	}
	for k, v := range m.Producers {
		f.st.Producers[k] = v
	}
	f.mu.Unlock()
	return out
}

// CheckCommand implements election.CommandChecker: a replica that answered an unknown
// command StatusBadCommand while the others applied it would hold other messages.
func (f *FSM) CheckCommand(cmd []byte) error { return CheckCommand(cmd) }

// applier evaluates commands against the state plus the not yet committed mutation.
type applier struct {
	st    *State
	m     *Mutation
	store Store
	flush func() error // waits until the store has every earlier mutation
}

func (a *applier) consumer(id string) (uint64, bool) {
	if v, ok := a.m.Consumers[id]; ok {
		return v, true
	}
	v, ok := a.st.Consumers[id]
	return v, ok
}

func (a *applier) producer(id string) (Producer, bool) {
	if v, ok := a.m.Producers[id]; ok {
		return v, true
	}
	v, ok := a.st.Producers[id]
	return v, ok
}

func (a *applier) apply(cmd []byte) interface{} {
	if len(cmd) < 2 || !known(cmd[0], cmd[1]) {
		return []byte{byte(StatusBadCommand)}
	}
	payload := cmd[2:]
	switch cmd[0] {
	case CmdProduce:
		var at int64
		if cmd[1] == version2 {
			if len(payload) < 8 {
				return EncodeProduceResults(nil)
			}
			at = int64(binary.BigEndian.Uint64(payload[len(payload)-8:]))
			payload = payload[:len(payload)-8]
		}
		batches, err := decodeProduce(payload)
		if err != nil {
			return EncodeProduceResults(nil)
		}
		first := a.m.Next
		rs := make([]ProduceResult, len(batches))
		for i, b := range batches {
			rs[i] = a.produce(b)
		}
		if at > 0 && a.m.Next > first {
			a.m.Stamps = append(a.m.Stamps, Stamp{Offset: first, At: at})
		}
		return EncodeProduceResults(rs)
	case CmdTruncate:
		t, err := decodeTruncate(payload)
		if err != nil {
			return encodeTruncateResult(TruncateResult{Status: StatusBadCommand})
		}
		if err := a.truncate(t.Before); err != nil {
			storeFailed(err)
		}
		return encodeTruncateResult(TruncateResult{Start: a.m.Start})
	case CmdRegister:
		d := decode.NewReader(payload)
		id := string(d.Bytes32("consumer"))
		if d.Done() != nil {
			return encodeRegisterResult(RegisterResult{Status: StatusBadCommand})
		}
		off, ok := a.consumer(id)
		if !ok {
			off = a.m.Start
			a.m.Consumers[id] = off
		}
		return encodeRegisterResult(RegisterResult{Offset: off})
	case CmdConsume:
		r, err := decodeConsume(payload)
		if err != nil {
			return encodeConsumeResult(ConsumeResult{Status: StatusBadCommand})
		}
		res, err := a.consume(r)
		if err != nil {
			storeFailed(err)
		}
		return encodeConsumeResult(res)
	}
	return []byte{byte(StatusBadCommand)}
}

func (a *applier) produce(b Batch) ProduceResult {
	if b.Producer != "" {
		if p, ok := a.producer(b.Producer); ok {
			switch {
			case b.Seq == p.Seq:
				return ProduceResult{Status: StatusDuplicate, First: p.First, Count: p.Count}
			case b.Seq < p.Seq:
				return ProduceResult{Status: StatusStaleSequence}
			}
		}
	}
	first := a.m.Next
	a.m.Msgs = append(a.m.Msgs, b.Msgs...)
	for _, msg := range b.Msgs {
		a.m.Bytes += uint64(len(msg))
	}
	a.m.Next += uint64(len(b.Msgs))
	if b.Producer != "" {
		a.m.Producers[b.Producer] = Producer{Seq: b.Seq, First: first, Count: uint32(len(b.Msgs))}
	}
	return ProduceResult{First: first, Count: uint32(len(b.Msgs))}
}

func (a *applier) consume(r ConsumeRequest) (ConsumeResult, error) {
	cur, ok := a.consumer(r.Consumer)
	if !ok {
		return ConsumeResult{Status: StatusUnknownConsumer, Next: a.m.Next}, nil
	}
	from := cur
	if r.HasExpected {
		if r.Expected > cur {
			return ConsumeResult{Status: StatusOffsetAhead, From: cur, Next: a.m.Next}, nil
		}
		from = r.Expected // a retry: hand out the same messages again
	}
	// Retention may have deleted them since: the consumer goes on from the earliest
	// message kept (what Kafka's auto.offset.reset=earliest does).
	from = max(from, a.m.Start)
	n, err := a.fit(from, uint64(r.Max), uint64(r.MaxBytes))
	if err != nil {
		return ConsumeResult{}, err
	}
	if end := from + n; end > cur {
		a.m.Consumers[r.Consumer] = end
	}
	return ConsumeResult{From: from, Count: uint32(n), Next: a.m.Next}, nil
}

// truncate deletes the messages before offset before (at most all of them) and moves
// the consumers that had not reached it there.
func (a *applier) truncate(before uint64) error {
	before = min(before, a.m.Next)
	if before <= a.m.Start {
		return nil
	}
	dropped, err := a.size(a.m.Start, before)
	if err != nil {
		return err
	}
	a.m.Start, a.m.Bytes = before, a.m.Bytes-dropped
	for id := range a.st.Consumers {
		if off, _ := a.consumer(id); off < before {
			a.m.Consumers[id] = before
		}
	}
	for id, off := range a.m.Consumers {
		if off < before {
			a.m.Consumers[id] = before
		}
	}
	return nil
}

// size adds up the sizes of messages [from, to), looking in the store for committed
// offsets and in the mutation for new ones.
func (a *applier) size(from, to uint64) (uint64, error) {
	var total uint64
	if from < a.m.First {
		if err := a.flush(); err != nil {
			return 0, err
		}
		end := min(to, a.m.First)
		_, size, err := a.store.Fit(from, end, math.MaxUint64)
		if err != nil {
			return 0, err
		}
		total, from = size, end
	}
	for off := from; off < to; off++ {
		total += uint64(len(a.m.Msgs[off-a.m.First]))
	}
	return total, nil
}

// fit counts messages from offset from, at most max and maxBytes (but at least one),
// looking in the store for committed offsets and in the mutation for new ones.
func (a *applier) fit(from, max, maxBytes uint64) (uint64, error) {
	end := min(from+max, a.m.Next)
	if from >= end {
		return 0, nil
	}
	var n, size uint64
	if from < a.m.First {
		if err := a.flush(); err != nil {
			return 0, err
		}
		var err error
		n, size, err = a.store.Fit(from, min(end, a.m.First), maxBytes)
		if err != nil || from+n < a.m.First {
			return n, err
		}
	}
	for off := from + n; off < end; off++ {
		l := uint64(len(a.m.Msgs[off-a.m.First]))
		if n > 0 && size+l > maxBytes {
			break
		}
		n, size = n+1, size+l
	}
	return n, nil
}

// flush waits until the store has committed every mutation applied so far.
func (f *FSM) flush() error {
	f.mu.RLock()
	wait := f.pending
	f.mu.RUnlock()
	if wait == nil {
		return nil
	}
	return wait()
}

// Messages reads n applied messages from offset from, or fails with a *GoneError
// when retention deleted some of them.
func (f *FSM) Messages(from uint64, n uint32) ([][]byte, error) {
	if n == 0 {
		return nil, nil
	}
	if err := f.flush(); err != nil {
		return nil, err
	}
	if start, _ := f.Bounds(); from < start {
		return nil, &GoneError{Start: start}
	}
	msgs, err := f.store.Messages(from, n)
	if start, _ := f.Bounds(); err != nil && from < start {
		return nil, &GoneError{Start: start} // deleted while it was read
	}
	return msgs, err
}

// ErrDropped is the store's answer once the replica is being dropped (to be rebuilt,
// deleted, or closed): nothing applied from then on is committed, so the results no
// longer matter.
var ErrDropped = errors.New("partition: the replica is being dropped")

// storeFailed stops the process when the store cannot tell message sizes (the restart
// re-applies the entries from the log), unless the replica is being dropped.
func storeFailed(err error) {
	if !errors.Is(err, ErrDropped) {
		panic(fmt.Sprintf("partition: reading message sizes: %v", err))
	}
}

// GoneError is a read below the partition's first offset: retention deleted it.
type GoneError struct{ Start uint64 }

func (e *GoneError) Error() string {
	return fmt.Sprintf("the messages before offset %d were deleted by retention; the earliest offset is %d", e.Start, e.Start)
}

// Bounds returns the first offset kept and the next offset: the messages stored are
// [start, next).
func (f *FSM) Bounds() (start, next uint64) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.st.Start, f.st.Next
}

// Info returns the applied index, next offset, bytes kept and consumer count.
func (f *FSM) Info() (applied, next, bytes uint64, consumers int) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.st.Applied, f.st.Next, f.st.Bytes, len(f.st.Consumers)
}

// Producer returns the last batch stored for a producer.
func (f *FSM) Producer(id string) (Producer, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	p, ok := f.st.Producers[id]
	return p, ok
}

// Left returns how many messages are left for a consumer.
func (f *FSM) Left(consumer string) (uint64, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	off, ok := f.st.Consumers[consumer]
	if !ok {
		return 0, false
	}
	return f.st.Next - off, true
}

// Lags returns how many messages are left for each consumer.
func (f *FSM) Lags() map[string]uint64 {
	f.mu.RLock()
	defer f.mu.RUnlock()
	out := make(map[string]uint64, len(f.st.Consumers))
	for c, off := range f.st.Consumers {
		out[c] = f.st.Next - off
	}
	return out
}

// Snapshot implements raft.FSM. It captures only the small state: the messages are
// immutable in the store, so the snapshot store adds them when a follower needs them.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return snapshot{st: f.st.clone(), committed: f.pending}, nil
}

// Restore implements raft.FSM. A snapshot no newer than what the store already holds
// (raft restores the latest local snapshot at every start) changes nothing: the store
// is at least as far along and raft replays only the entries after it.
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	st, _, err := ReadSnapshotPrefix(rc)
	if err != nil {
		return err
	}
	if err := f.flush(); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if st.Applied <= f.st.Applied {
		return nil
	}
	if err := f.store.Restore(st); err != nil {
		return err
	}
	f.st = st
	return nil
}

type snapshot struct {
	st        State
	committed func() error // nil, or waits until the store holds st
}

// Persist first waits for the store to hold the snapshot's state: once the snapshot
// exists raft may drop the log entries it covers.
func (s snapshot) Persist(sink raft.SnapshotSink) error {
	if s.committed != nil {
		if err := s.committed(); err != nil {
			sink.Cancel()
			return err
		}
	}
	if err := WriteSnapshotPrefix(sink, s.st); err != nil {
		sink.Cancel()
		return err
	}
	return sink.Close()
}

func (s snapshot) Release() {}
