package store

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/quorumq/quorumq/broker/internal/wal"
	bolt "go.etcd.io/bbolt"
)

// errKeyNotFound must read exactly "not found": raft compares the message text.
var errKeyNotFound = errors.New("not found")

// StableStore is the group's raft.StableStore.
type StableStore struct{ g *Group }

// LogStore returns the group's Raft log (in the broker's write-ahead log, see broker/internal/wal).
func (g *Group) LogStore() *wal.Log { return g.log }

// StableStore returns the group's Raft term/vote store.
func (g *Group) StableStore() *StableStore { return &StableStore{g} }

func u64key(v uint64) []byte { return binary.BigEndian.AppendUint64(make([]byte, 0, 8), v) }

// Set implements raft.StableStore.
func (s *StableStore) Set(key, val []byte) error {
	val = append([]byte(nil), val...)
	return s.g.update(bStable, func(b *bolt.Bucket) error { return b.Put(key, val) })
}

// SetBatch writes every key in one commit (election.BatchStable).
func (s *StableStore) SetBatch(keys, vals [][]byte) error {
	return s.g.update(bStable, func(b *bolt.Bucket) error {
		for i, k := range keys {
			if err := b.Put(k, append([]byte(nil), vals[i]...)); err != nil {
				return err
			}
		}
		return nil
	})
}

// Get implements raft.StableStore.
func (s *StableStore) Get(key []byte) ([]byte, error) {
	var out []byte
	err := s.g.view(bStable, func(b *bolt.Bucket) error {
		v := b.Get(key)
		if v == nil {
			return errKeyNotFound
		}
		out = append([]byte(nil), v...)
		return nil
	})
	return out, err
}

// SetUint64 implements raft.StableStore.
func (s *StableStore) SetUint64(key []byte, val uint64) error { return s.Set(key, u64key(val)) }

// GetUint64 implements raft.StableStore.
func (s *StableStore) GetUint64(key []byte) (uint64, error) {
	v, err := s.Get(key)
	if err != nil {
		return 0, err
	}
	if len(v) != 8 {
		return 0, fmt.Errorf("store: stable key %q holds %d bytes", key, len(v))
	}
	return binary.BigEndian.Uint64(v), nil
}
