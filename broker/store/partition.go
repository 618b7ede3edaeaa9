package store

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/quorumq/quorumq/broker/partition"
	bolt "go.etcd.io/bbolt"
)

// Partition is the group's partition.Store.
type Partition struct{ g *Group }

// Partition returns the group's message store.
func (g *Group) Partition() *Partition { return &Partition{g} }

var keyState = []byte("state") // applied index, next offset, bytes

// Load implements partition.Store.
func (p *Partition) Load() (partition.State, error) {
	st := partition.NewState()
	err := p.g.db.data.view(func(tx *bolt.Tx) error {
		meta, err := p.g.bucket(tx, bMeta)
		if err != nil {
			return err
		}
		if v := meta.Get(keyState); v != nil {
			if len(v) != 24 {
				return fmt.Errorf("store: partition state of %d bytes", len(v))
			}
			st.Applied = binary.BigEndian.Uint64(v)
			st.Next = binary.BigEndian.Uint64(v[8:])
			st.Bytes = binary.BigEndian.Uint64(v[16:])
		}
		cons, _ := p.g.bucket(tx, bCons)
		if err := cons.ForEach(func(k, v []byte) error {
			st.Consumers[string(k)] = binary.BigEndian.Uint64(v)
			return nil
		}); err != nil {
			return err
		}
		prod, _ := p.g.bucket(tx, bProd)
		return prod.ForEach(func(k, v []byte) error {
			pr, err := partition.DecodeProducer(v)
			st.Producers[string(k)] = pr
			return err
		})
	})
	return st, err
}

// putState writes the consumer offsets and producers given (all, or the changed ones)
// and the applied index, next offset and bytes into the group's root bucket.
func putState(root *bolt.Bucket, consumers map[string]uint64, producers map[string]partition.Producer, applied, next, bytes uint64) error {
	cons, prod := root.Bucket(bCons), root.Bucket(bProd)
	for k, v := range consumers {
		if err := cons.Put([]byte(k), u64key(v)); err != nil {
			return err
		}
	}
	for k, v := range producers {
		if err := prod.Put([]byte(k), partition.EncodeProducer(nil, v)); err != nil {
			return err
		}
	}
	v := binary.BigEndian.AppendUint64(make([]byte, 0, 24), applied)
	v = binary.BigEndian.AppendUint64(v, next)
	return root.Bucket(bMeta).Put(keyState, binary.BigEndian.AppendUint64(v, bytes))
}

// Commit implements partition.Store: messages, offsets, producers and the applied
// index in one transaction, queued behind the writes before it. A failed commit stops
// the process: the entries are committed in Raft, and a restart re-applies them from
// the log (which keeps them until the store has them, see partition.FSM).
func (p *Partition) Commit(m *partition.Mutation) func() error {
	ch := p.g.db.data.updateAsync(func(tx *bolt.Tx) error {
		root := tx.Bucket(p.g.name)
		if root == nil {
			return ErrNoGroup
		}
		if err := putMessages(root.Bucket(bMsg), m.First, m.Msgs); err != nil {
			return err
		}
		return putState(root, m.Consumers, m.Producers, m.Applied, m.Next, m.Bytes)
	})
	done := make(chan struct{})
	var err error
	go func() {
		err = <-ch
		close(done)
		// A deleted replica's last writes are moot; after Close the restart replays them.
		if err != nil && !errors.Is(err, ErrNoGroup) && !errors.Is(err, ErrClosed) {
			panic(fmt.Sprintf("store: commit of %s at index %d: %v", p.g.name, m.Applied, err))
		}
	}()
	return func() error {
		p.g.db.data.kick()
		<-done
		return err
	}
}

func putMessages(b *bolt.Bucket, first uint64, msgs [][]byte) error {
	b.FillPercent = 1 // offsets only grow: pack pages full
	for i, m := range msgs {
		if err := b.Put(u64key(first+uint64(i)), m); err != nil {
			return err
		}
	}
	return nil
}

// Fit implements partition.Store.
func (p *Partition) Fit(from, to, maxBytes uint64) (n, size uint64, err error) {
	err = p.g.view(bMsg, func(b *bolt.Bucket) error {
		c := b.Cursor()
		off := from
		for k, v := c.Seek(u64key(from)); off < to; k, v = c.Next() {
			if k == nil || binary.BigEndian.Uint64(k) != off {
				return fmt.Errorf("store: message %d missing", off)
			}
			if n > 0 && size+uint64(len(v)) > maxBytes {
				break
			}
			n, size, off = n+1, size+uint64(len(v)), off+1
		}
		return nil
	})
	return n, size, err
}

// Messages implements partition.Store.
func (p *Partition) Messages(from uint64, n uint32) ([][]byte, error) {
	out := make([][]byte, 0, n)
	err := p.g.view(bMsg, func(b *bolt.Bucket) error {
		c := b.Cursor()
		off := from
		for k, v := c.Seek(u64key(from)); uint32(len(out)) < n; k, v = c.Next() {
			if k == nil || binary.BigEndian.Uint64(k) != off {
				return fmt.Errorf("store: message %d missing", off)
			}
			out = append(out, append([]byte(nil), v...))
			off++
		}
		return nil
	})
	return out, err
}

// Restore implements partition.Store: the snapshot store has written the messages;
// this replaces offsets, producers and the applied index.
func (p *Partition) Restore(st partition.State) error {
	return p.g.db.data.update(func(tx *bolt.Tx) error {
		root := tx.Bucket(p.g.name)
		if root == nil {
			return ErrNoGroup
		}
		for _, name := range [][]byte{bCons, bProd} {
			if err := root.DeleteBucket(name); err != nil {
				return err
			}
			if _, err := root.CreateBucket(name); err != nil {
				return err
			}
		}
		return putState(root, st.Consumers, st.Producers, st.Applied, st.Next, st.Bytes)
	})
}
