package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/quorumq/quorumq/broker/partition"
	bolt "go.etcd.io/bbolt"
)

// Partition is the group's partition.Store.
type Partition struct{ g *Group }

// Partition returns the group's message store.
func (g *Group) Partition() *Partition { return &Partition{g} }

var keyState = []byte("state") // applied index, next offset, bytes, start (absent: 0)

// Load implements partition.Store.
func (p *Partition) Load() (partition.State, error) {
	st := partition.NewState()
	err := p.g.db.data.view(func(tx *bolt.Tx) error {
		meta, err := p.g.bucket(tx, bMeta)
		if err != nil {
			return err
		}
		if v := meta.Get(keyState); v != nil {
			if v, err = stateValue(v); err != nil {
				return err
			}
			st.Applied = binary.BigEndian.Uint64(v)
			st.Next = binary.BigEndian.Uint64(v[8:])
			st.Bytes = binary.BigEndian.Uint64(v[16:])
			if len(v) == 32 {
				st.Start = binary.BigEndian.Uint64(v[24:])
			}
		}
		cons, _ := p.g.bucket(tx, bCons)
		if err := cons.ForEach(func(k, v []byte) error {
			v, err := openValue(k, v, 8)
			if err == nil {
				st.Consumers[string(k)] = binary.BigEndian.Uint64(v)
			}
			return err
		}); err != nil {
			return err
		}
		prod, _ := p.g.bucket(tx, bProd)
		return prod.ForEach(func(k, v []byte) error {
			v, err := openValue(k, v, producerSize)
			if err != nil {
				return err
			}
			pr, err := partition.DecodeProducer(v)
			st.Producers[string(k)] = pr
			return err
		})
	})
	if err != nil {
		return st, fmt.Errorf("store: load %s: %w", p.g.name, err)
	}
	return st, nil
}

// producerSize is the length of partition.EncodeProducer's encoding.
var producerSize = len(partition.EncodeProducer(nil, partition.Producer{}))

// putState writes the consumer offsets and producers given (all, or the changed ones)
// and the applied index, next offset, bytes and start into the group's root bucket.
func putState(root *bolt.Bucket, consumers map[string]uint64, producers map[string]partition.Producer, applied, next, bytes, start uint64) error {
	cons, prod := root.Bucket(bCons), root.Bucket(bProd)
	for k, v := range consumers {
		if err := cons.Put([]byte(k), sealValue([]byte(k), u64key(v))); err != nil {
			return err
		}
	}
	for k, v := range producers {
		if err := prod.Put([]byte(k), sealValue([]byte(k), partition.EncodeProducer(nil, v))); err != nil {
			return err
		}
	}
	v := binary.BigEndian.AppendUint64(make([]byte, 0, 32), applied)
	v = binary.BigEndian.AppendUint64(v, next)
	v = binary.BigEndian.AppendUint64(v, bytes)
	return root.Bucket(bMeta).Put(keyState, sealValue(keyState, binary.BigEndian.AppendUint64(v, start)))
}

// stateValue opens a sealed state value: 24 bytes, or 32 with the start retention
// made (written since retention).
func stateValue(v []byte) ([]byte, error) {
	if len(v) == 32 || len(v) == 32+sealSize {
		return openValue(keyState, v, 32)
	}
	return openValue(keyState, v, 24)
}

// storedStart is the start recorded with the group's state.
func storedStart(root *bolt.Bucket) uint64 {
	if v, err := stateValue(root.Bucket(bMeta).Get(keyState)); err == nil && len(v) == 32 {
		return binary.BigEndian.Uint64(v[24:])
	}
	return 0
}

// truncate drops the messages before start if the store still holds some, and
// records start (the messages stored next may begin there).
func truncate(dl *dataLog, root *bolt.Bucket, start uint64) error {
	if start <= storedStart(root) {
		return nil
	}
	if err := dropPrefix(dl, root, start); err != nil {
		return err
	}
	v := make([]byte, 32)
	if old := root.Bucket(bMeta).Get(keyState); old != nil {
		cur, err := stateValue(old)
		if err != nil {
			return err
		}
		copy(v, cur)
	}
	binary.BigEndian.PutUint64(v[24:], start)
	return root.Bucket(bMeta).Put(keyState, sealValue(keyState, v))
}

// Commit implements partition.Store: messages, offsets, producers and the applied
// index in one transaction, queued behind the writes before it. A failed commit stops
// the process: the entries are committed in Raft, and a restart re-applies them from
// the log (which keeps them until the store has them, see partition.FSM).
func (p *Partition) Commit(m *partition.Mutation) func() error {
	ch := p.g.db.data.updateAsync(func(tx *bolt.Tx) error {
		if p.dropping() {
			return partition.ErrDropped
		}
		root, err := p.g.root(tx)
		if err != nil {
			return err
		}
		dl := p.g.db.data.dlog
		if err := putMessages(dl, root, m.First, m.Msgs); err != nil {
			return err
		}
		if err := putStamps(root, m.Stamps); err != nil {
			return err
		}
		if err := truncate(dl, root, m.Start); err != nil {
			return err
		}
		return putState(root, m.Consumers, m.Producers, m.Applied, m.Next, m.Bytes, m.Start)
	})
	done := make(chan struct{})
	var err error
	go func() {
		err = <-ch
		close(done)
		// A deleted or dropped replica's last writes are moot; after Close (or a drop
		// that closes it) the restart replays them.
		if err != nil && !errors.Is(err, ErrNoGroup) && !errors.Is(err, ErrClosed) && !errors.Is(err, partition.ErrDropped) {
			panic(fmt.Sprintf("store: commit of %s at index %d: %v", p.g.name, m.Applied, err))
		}
	}()
	return func() error {
		p.g.db.data.kick()
		<-done
		return err
	}
}

// fitRetry is how often Fit looks again at a damaged index it waits for.
const fitRetry = 100 * time.Millisecond

// Drop makes the replica's store stop: its pending and later commits are discarded
// (the Raft log, or the group once rebuilt, has their entries) and a Fit waiting for a
// repair fails with partition.ErrDropped, so that raft can be shut down. Called when
// the replica is closed, deleted or rebuilt.
func (p *Partition) Drop() { p.g.dropOnce.Do(func() { close(p.g.dropped) }) }

func (p *Partition) dropping() bool {
	select {
	case <-p.g.dropped:
		return true
	default:
		return false
	}
}

// Fit implements partition.Store: while the index of messages it must count is
// damaged it reports the damage and waits for the repair (see partition.Store).
func (p *Partition) Fit(from, to, maxBytes uint64) (n, size uint64, err error) {
	for {
		n, size, err = p.fit(from, to, maxBytes)
		if !errors.As(err, new(*IndexError)) {
			return n, size, err
		}
		p.g.corrupt(err)
		t := time.NewTimer(fitRetry)
		select {
		case <-p.g.dropped:
			t.Stop()
			return 0, 0, fmt.Errorf("%w (waiting for the repair of: %v)", partition.ErrDropped, err)
		case <-t.C:
		}
	}
}

func (p *Partition) fit(from, to, maxBytes uint64) (n, size uint64, err error) {
	err = p.g.viewData(func(root *bolt.Bucket) error {
		full := false // stopped by to or maxBytes, not by the end of the messages
		end, err := walk(root, from, func(r run, i int) (int, bool, error) {
			took := 0
			for ; i+took < r.count(); took++ {
				l := r.size(i + took)
				if from+n >= to || n > 0 && size+l > maxBytes {
					full = true
					break
				}
				n, size = n+1, size+l
			}
			return took, !full, nil
		})
		if err == nil && !full && end < to {
			err = fmt.Errorf("store: message %d missing", end)
		}
		return err
	})
	return n, size, err
}

// Messages implements partition.Store.
func (p *Partition) Messages(from uint64, n uint32) ([][]byte, error) {
	out := make([][]byte, 0, n)
	dl := p.g.db.data.dlog
	var next dataPos // where the last message read ends: a reader in order goes on there
	err := p.g.viewData(func(root *bolt.Bucket) error {
		end, err := walk(root, from, func(r run, i int) (int, bool, error) {
			k := min(r.count()-i, int(n)-len(out))
			msgs, err := r.read(dl, i, k)
			out = append(out, msgs...)
			next = dataPos{r.at.seg, r.at.off + r.end(i+k-1)}
			return k, len(out) < int(n), err
		})
		if err == nil && len(out) < int(n) {
			err = fmt.Errorf("store: message %d missing", end)
		}
		return err
	})
	if err != nil {
		return nil, p.g.corrupt(err)
	}
	if len(out) > 0 {
		dl.prefetch(next, prefetchBytes)
	}
	return out, nil
}

// Restore implements partition.Store: the snapshot store has written the messages;
// this replaces offsets, producers and the applied index.
func (p *Partition) Restore(st partition.State) error {
	return p.g.updateData(func(root *bolt.Bucket) error {
		if err := truncate(p.g.db.data.dlog, root, st.Start); err != nil {
			return err
		}
		for _, name := range [][]byte{bCons, bProd} {
			if err := root.DeleteBucket(name); err != nil {
				return err
			}
			if _, err := root.CreateBucket(name); err != nil {
				return err
			}
		}
		return putState(root, st.Consumers, st.Producers, st.Applied, st.Next, st.Bytes, st.Start)
	})
}
