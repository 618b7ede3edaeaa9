package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/raft"
	bolt "go.etcd.io/bbolt"
)

// errKeyNotFound must read exactly "not found": raft compares the message text.
var errKeyNotFound = errors.New("not found")

// LogStore is the group's raft.LogStore.
type LogStore struct{ g *Group }

// StableStore is the group's raft.StableStore.
type StableStore struct{ g *Group }

// LogStore returns the group's Raft log.
func (g *Group) LogStore() *LogStore { return &LogStore{g} }

// StableStore returns the group's Raft term/vote store.
func (g *Group) StableStore() *StableStore { return &StableStore{g} }

func u64key(v uint64) []byte { return binary.BigEndian.AppendUint64(make([]byte, 0, 8), v) }

func (s *LogStore) edge(first bool) (uint64, error) {
	var idx uint64
	err := s.g.view(bLog, func(b *bolt.Bucket) error {
		c := b.Cursor()
		k, _ := c.Last()
		if first {
			k, _ = c.First()
		}
		if k != nil {
			idx = binary.BigEndian.Uint64(k)
		}
		return nil
	})
	return idx, err
}

// FirstIndex implements raft.LogStore.
func (s *LogStore) FirstIndex() (uint64, error) { return s.edge(true) }

// LastIndex implements raft.LogStore.
func (s *LogStore) LastIndex() (uint64, error) { return s.edge(false) }

// GetLog implements raft.LogStore.
func (s *LogStore) GetLog(index uint64, l *raft.Log) error {
	return s.g.view(bLog, func(b *bolt.Bucket) error {
		v := b.Get(u64key(index))
		if v == nil {
			return raft.ErrLogNotFound
		}
		return decodeLog(index, v, l)
	})
}

// StoreLog implements raft.LogStore.
func (s *LogStore) StoreLog(l *raft.Log) error { return s.StoreLogs([]*raft.Log{l}) }

// StoreLogs implements raft.LogStore. The write shares its fsync with every other
// group writing at the same time.
func (s *LogStore) StoreLogs(logs []*raft.Log) error {
	encoded := make([][]byte, len(logs))
	for i, l := range logs {
		encoded[i] = encodeLog(l)
	}
	return s.g.update(bLog, func(b *bolt.Bucket) error {
		b.FillPercent = 1 // keys only ever grow: pack pages full
		for i, l := range logs {
			if err := b.Put(u64key(l.Index), encoded[i]); err != nil {
				return err
			}
		}
		return nil
	})
}

// DeleteRange implements raft.LogStore.
func (s *LogStore) DeleteRange(min, max uint64) error {
	return s.g.update(bLog, func(b *bolt.Bucket) error {
		c := b.Cursor()
		for k, _ := c.Seek(u64key(min)); k != nil && binary.BigEndian.Uint64(k) <= max; k, _ = c.Next() {
			if err := c.Delete(); err != nil {
				return err
			}
		}
		return nil
	})
}

// A log entry on disk: term, type, appended-at (unix ns), extensions length,
// extensions, data. Binary rather than msgpack: it is written for every entry.
func encodeLog(l *raft.Log) []byte {
	buf := make([]byte, 0, 8+1+8+4+len(l.Extensions)+len(l.Data))
	buf = binary.BigEndian.AppendUint64(buf, l.Term)
	buf = append(buf, byte(l.Type))
	var at int64
	if !l.AppendedAt.IsZero() {
		at = l.AppendedAt.UnixNano()
	}
	buf = binary.BigEndian.AppendUint64(buf, uint64(at))
	buf = binary.BigEndian.AppendUint32(buf, uint32(len(l.Extensions)))
	buf = append(buf, l.Extensions...)
	return append(buf, l.Data...)
}

func decodeLog(index uint64, v []byte, l *raft.Log) error {
	if len(v) < 21 {
		return fmt.Errorf("store: log entry %d: %d bytes", index, len(v))
	}
	ext := int(binary.BigEndian.Uint32(v[17:21]))
	if len(v) < 21+ext {
		return fmt.Errorf("store: log entry %d: extensions cut short", index)
	}
	*l = raft.Log{Index: index, Term: binary.BigEndian.Uint64(v), Type: raft.LogType(v[8])}
	if at := int64(binary.BigEndian.Uint64(v[9:17])); at != 0 {
		l.AppendedAt = time.Unix(0, at)
	}
	if ext > 0 {
		l.Extensions = append([]byte(nil), v[21:21+ext]...)
	}
	// Copied: bolt's slice is only valid inside the transaction.
	l.Data = append([]byte(nil), v[21+ext:]...)
	return nil
}

// Set implements raft.StableStore.
func (s *StableStore) Set(key, val []byte) error {
	val = append([]byte(nil), val...)
	return s.g.update(bStable, func(b *bolt.Bucket) error { return b.Put(key, val) })
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
