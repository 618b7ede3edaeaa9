package election

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"log/slog"
	"sync"

	"github.com/hashicorp/raft"
)

// raft-boltdb's pages carry no checksum, so the log and stable store a Node opens itself
// seal every value with a CRC-32C, verified on every read. A log entry's seal leads its
// Extensions (raft and this project's FSMs use none; an application's own are kept
// behind the seal): a 4-byte mark, then the CRC of the entry's index, term, type, data and
// original extensions. Entries written before the seal existed are read unchecked, and
// sealed in place by check at the next open, which then records keySealed so that from
// then on an entry without a seal is damage too.
var (
	sealMark   = [4]byte{'q', 'q', 'c', 1}
	castagnoli = crc32.MakeTable(crc32.Castagnoli)
	keySealed  = []byte("quorumq_sealed")
	errDamaged = errors.New("failed its checksum")
)

const sealLen = 8

// checkedLogs is a raft.LogStore that seals what it stores and verifies what it reads.
type checkedLogs struct {
	raft.LogStore
	strict  bool                        // every entry is sealed; set before raft starts
	damaged func(idx uint64, err error) // set before raft starts
}

func entrySum(l *raft.Log, ext []byte) uint32 {
	var h [21]byte
	binary.BigEndian.PutUint64(h[0:], l.Index)
	binary.BigEndian.PutUint64(h[8:], l.Term)
	h[16] = byte(l.Type)
	binary.BigEndian.PutUint32(h[17:], uint32(len(l.Data)))
	c := crc32.Update(0, castagnoli, h[:])
	c = crc32.Update(c, castagnoli, l.Data)
	return crc32.Update(c, castagnoli, ext)
}

// seal returns a sealed copy of l: raft keeps sending its own entries to followers, whose
// stores seal them again.
func seal(l *raft.Log) *raft.Log {
	s := *l
	s.Extensions = make([]byte, sealLen+len(l.Extensions))
	copy(s.Extensions, sealMark[:])
	binary.BigEndian.PutUint32(s.Extensions[4:], entrySum(l, l.Extensions))
	copy(s.Extensions[sealLen:], l.Extensions)
	return &s
}

// unseal verifies the entry read at idx and removes its seal; old reports an entry
// written before seals existed.
func unseal(idx uint64, l *raft.Log, strict bool) (old bool, err error) {
	ext := l.Extensions
	if len(ext) < sealLen || !bytes.Equal(ext[:4], sealMark[:]) {
		if strict {
			return false, fmt.Errorf("raft log entry %d has lost its checksum: %w", idx, errDamaged)
		}
		return true, nil
	}
	inner := ext[sealLen:]
	if l.Index != idx || entrySum(l, inner) != binary.BigEndian.Uint32(ext[4:]) {
		return false, fmt.Errorf("raft log entry %d %w", idx, errDamaged)
	}
	if len(inner) == 0 {
		inner = nil
	}
	l.Extensions = inner
	return false, nil
}

// GetLog implements raft.LogStore. A damaged entry is never returned: the error makes a
// leader's replication to the follower that needed it stop and retry (and the leader,
// now recovering, hands leadership to a healthy member which replicates in its place);
// on a follower it fails the AppendEntries that needed it.
func (c *checkedLogs) GetLog(idx uint64, l *raft.Log) error {
	if err := c.LogStore.GetLog(idx, l); err != nil {
		return err
	}
	if _, err := unseal(idx, l, c.strict); err != nil {
		*l = raft.Log{}
		c.damaged(idx, err)
		return fmt.Errorf("election: %w", err)
	}
	return nil
}

// StoreLog implements raft.LogStore.
func (c *checkedLogs) StoreLog(l *raft.Log) error { return c.LogStore.StoreLog(seal(l)) }

// StoreLogs implements raft.LogStore.
func (c *checkedLogs) StoreLogs(logs []*raft.Log) error {
	sealed := make([]*raft.Log, len(logs))
	for i, l := range logs {
		sealed[i] = seal(l)
	}
	return c.LogStore.StoreLogs(sealed)
}

// check reads every entry once before raft starts: it seals entries written before seals
// existed, drops damaged entries that the latest snapshot covers (raft would only ever
// send them to a follower, which the snapshot serves as well), and cuts the log at the
// first damaged entry past the snapshot (raft would read it at start and panic). It
// returns what it cut; the node then recovers what was there from a healthy leader.
func (c *checkedLogs) check(stable raft.StableStore, snapIndex uint64, log *slog.Logger) (cut error, err error) {
	first, err := c.LogStore.FirstIndex()
	if err != nil {
		return nil, err
	}
	last, err := c.LogStore.LastIndex()
	if err != nil || last == 0 {
		return nil, err
	}
	var old []*raft.Log
	for idx := first; idx <= last; idx++ {
		var l raft.Log
		derr := c.LogStore.GetLog(idx, &l)
		wasOld := false
		if derr == nil {
			wasOld, derr = unseal(idx, &l, c.strict)
		} else if !errors.Is(derr, raft.ErrLogNotFound) {
			derr = fmt.Errorf("raft log entry %d unreadable: %v: %w", idx, derr, errDamaged)
		}
		switch {
		case derr != nil && idx <= snapIndex:
			StorageFaults.WithLabelValues(FaultRaftLogChecksum).Inc()
			log.Warn("storage fault: dropped the raft log up to a damaged entry the latest snapshot covers", "error", derr, "snapshot_index", snapIndex)
			if err := c.LogStore.DeleteRange(first, idx); err != nil {
				return nil, err
			}
			old, first = nil, idx+1
			continue
		case derr != nil:
			if err := c.sealAll(old); err != nil {
				return nil, err
			}
			if err := c.LogStore.DeleteRange(idx, last); err != nil {
				return nil, err
			}
			return fmt.Errorf("%w; cut the log's entries %d to %d", derr, idx, last), nil
		case wasOld:
			old = append(old, &l)
			if len(old) == 512 {
				if err := c.sealAll(old); err != nil {
					return nil, err
				}
				old = old[:0]
			}
		}
	}
	if err := c.sealAll(old); err != nil {
		return nil, err
	}
	if !c.strict {
		c.strict = true
		return nil, stable.Set(keySealed, []byte{1})
	}
	return nil, nil
}

func (c *checkedLogs) sealAll(logs []*raft.Log) error {
	if len(logs) == 0 {
		return nil
	}
	return c.StoreLogs(logs)
}

// checkedStable is a raft.StableStore whose values end in a seal: the mark and the CRC-32C
// of key and value. A damaged value reads as "not found" (the text raft tests for), so
// raft starts at term 0 without a vote while the node recovers; that it may then vote
// twice in a term it had voted in is the one risk left, and it is small: it votes again
// only after it has caught up from a leader, long after that term's election timed out.
type checkedStable struct {
	raft.StableStore
	strict  bool
	damaged func(kind string, err error)

	mu       sync.Mutex
	voteTerm []byte // LastVoteTerm's sealed value, written with the next key (Set)
	sealMark bool   // keySealed is to be written with the next key (markSealed)
}

// BatchStable is a raft.StableStore that can write several keys in one durable commit.
type BatchStable interface {
	SetBatch(keys, vals [][]byte) error
}

var keyLastVoteTerm = []byte("LastVoteTerm")

var errNotFound = errors.New("not found")

func stableSum(k, v []byte) uint32 {
	return crc32.Update(crc32.Update(0, castagnoli, k), castagnoli, v)
}

// Set implements raft.StableStore. Raft records a vote as LastVoteTerm, then
// LastVoteCand, each a commit of its own (two fsyncs each in bolt), and counts the vote
// only once both are written; it reads them back only when it starts. So on a store
// that writes batches, LastVoteTerm waits for the next key and both go in one commit:
// a third fewer commits in every election, which many groups electing at once (new
// topics, a broker's restart) queue on.
func (s *checkedStable) Set(k, v []byte) error {
	b := append(append(make([]byte, 0, len(v)+sealLen), v...), sealMark[:]...)
	b = binary.BigEndian.AppendUint32(b, stableSum(k, v))
	bs, ok := s.StableStore.(BatchStable)
	if !ok {
		return s.StableStore.Set(k, b)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if bytes.Equal(k, keyLastVoteTerm) {
		s.voteTerm = b
		return nil
	}
	keys, vals := [][]byte{k}, [][]byte{b}
	if s.voteTerm != nil {
		keys, vals = append(keys, keyLastVoteTerm), append(vals, s.voteTerm)
	}
	if s.sealMark {
		keys, vals = append(keys, keySealed), append(vals, []byte{1})
	}
	if len(keys) == 1 {
		return s.StableStore.Set(k, b)
	}
	if err := bs.SetBatch(keys, vals); err != nil {
		return err
	}
	s.voteTerm, s.sealMark = nil, false
	return nil
}

// markSealed records that every value is sealed from now on (keySealed). On a store
// that writes batches the mark goes with the next value written instead of in a commit
// of its own: a new group's first value is its first term, at bootstrap, and until a
// value is written the store has none that could lack a seal.
func (s *checkedStable) markSealed() error {
	if _, ok := s.StableStore.(BatchStable); !ok {
		if err := s.StableStore.Set(keySealed, []byte{1}); err != nil {
			return err
		}
	} else {
		s.mu.Lock()
		s.sealMark = true
		s.mu.Unlock()
	}
	s.strict = true
	return nil
}

// Get implements raft.StableStore.
func (s *checkedStable) Get(k []byte) ([]byte, error) {
	s.mu.Lock()
	b := s.voteTerm
	s.mu.Unlock()
	var err error
	if b == nil || !bytes.Equal(k, keyLastVoteTerm) {
		b, err = s.StableStore.Get(k)
	}
	if err != nil {
		return nil, err
	}
	v, _, err := unsealValue(k, b, s.strict)
	if err != nil {
		s.damaged(FaultStableChecksum, err)
		return nil, errNotFound
	}
	return v, nil
}

func unsealValue(k, b []byte, strict bool) (v []byte, old bool, err error) {
	n := len(b) - sealLen
	if n < 0 || !bytes.Equal(b[n:n+4], sealMark[:]) {
		if strict {
			return nil, false, fmt.Errorf("stable store value %q has lost its checksum: %w", k, errDamaged)
		}
		return b, true, nil
	}
	if stableSum(k, b[:n]) != binary.BigEndian.Uint32(b[n+4:]) {
		return nil, false, fmt.Errorf("stable store value %q %w", k, errDamaged)
	}
	return b[:n], false, nil
}

// SetUint64 implements raft.StableStore.
func (s *checkedStable) SetUint64(k []byte, v uint64) error {
	return s.Set(k, binary.BigEndian.AppendUint64(nil, v))
}

// GetUint64 implements raft.StableStore.
func (s *checkedStable) GetUint64(k []byte) (uint64, error) {
	v, err := s.Get(k)
	if err != nil {
		return 0, err
	}
	if len(v) != 8 {
		s.damaged(FaultStableChecksum, fmt.Errorf("stable store value %q holds %d bytes, not 8", k, len(v)))
		return 0, errNotFound
	}
	return binary.BigEndian.Uint64(v), nil
}

// raftStableKeys are the keys raft keeps in its stable store (raft.keyCurrentTerm etc.).
var raftStableKeys = [][]byte{KeyCurrentTerm, []byte("LastVoteTerm"), []byte("LastVoteCand")}

// check seals the values raft wrote before seals existed.
func (s *checkedStable) check() error {
	if s.strict {
		return nil
	}
	for _, k := range raftStableKeys {
		b, err := s.StableStore.Get(k)
		if err != nil {
			continue // not set yet
		}
		if v, old, _ := unsealValue(k, b, false); old {
			if err := s.Set(k, v); err != nil {
				return err
			}
		}
	}
	return nil
}
