package wal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/raft"
)

// Log is one group's raft.LogStore.
type Log struct {
	w     *WAL
	group string
}

// Log returns the raft.LogStore of group.
func (w *WAL) Log(group string) (*Log, error) {
	if err := validGroup(group); err != nil {
		return nil, err
	}
	return &Log{w: w, group: group}, nil
}

func (l *Log) bounds() (first, last uint64) {
	l.w.mu.RLock()
	defer l.w.mu.RUnlock()
	g := l.w.groups[l.group]
	if g == nil || len(g.locs) == 0 {
		return 0, 0
	}
	return g.first, g.last()
}

// FirstIndex implements raft.LogStore.
func (l *Log) FirstIndex() (uint64, error) {
	first, _ := l.bounds()
	return first, nil
}

// LastIndex implements raft.LogStore.
func (l *Log) LastIndex() (uint64, error) {
	_, last := l.bounds()
	return last, nil
}

// GetLog implements raft.LogStore: the entry's record from the batches just written,
// or one read from its segment, whose crc is checked again. A record that no longer
// checks out is reported (OnDamage) and not found: raft then sends a follower a
// snapshot rather than the entry, and never gets its bytes.
func (l *Log) GetLog(index uint64, out *raft.Log) error {
	buf, err := l.record(index)
	if err != nil {
		if errors.Is(err, ErrCorrupt) {
			if fn := l.w.onDamage; fn != nil {
				fn(l.group, err)
			}
			return raft.ErrLogNotFound
		}
		return err
	}
	return decodeEntry(buf[8+3+len(l.group):], out)
}

func (l *Log) record(index uint64) ([]byte, error) {
	l.w.mu.RLock()
	defer l.w.mu.RUnlock() // held while reading: a segment is only deleted under the write lock
	g := l.w.groups[l.group]
	if g == nil || len(g.locs) == 0 || index < g.first || index > g.last() {
		return nil, raft.ErrLogNotFound
	}
	buf, err := l.w.readRecord(g.locs[index-g.first])
	if err != nil {
		return nil, fmt.Errorf("wal: entry %d of %s: %w", index, l.group, err)
	}
	return buf, nil
}

// ErrCorrupt is a record that does not check out when read back.
var ErrCorrupt = errors.New("wal: record damaged on disk (checksum mismatch)")

// readRecord returns the record at at, from the recent batches or checked as read from
// its segment (w.mu held).
func (w *WAL) readRecord(at loc) ([]byte, error) {
	if buf := w.cached(at); buf != nil {
		return buf, nil
	}
	return w.readDisk(at)
}

// readDisk reads the record at at from its segment and checks it (w.mu held).
func (w *WAL) readDisk(at loc) ([]byte, error) {
	s := w.segment(at.seg)
	if s == nil {
		return nil, fmt.Errorf("segment %d is gone", at.seg)
	}
	buf := make([]byte, at.len)
	if _, err := s.f.ReadAt(buf, int64(at.off)); err != nil {
		return nil, err
	}
	if n, ok := validAt(buf, 0, s.seed); !ok || n != len(buf) {
		return nil, fmt.Errorf("%w: segment %d at byte %d", ErrCorrupt, s.id, at.off)
	}
	return buf, nil
}

// StoreLog implements raft.LogStore.
func (l *Log) StoreLog(e *raft.Log) error { return l.StoreLogs([]*raft.Log{e}) }

// StoreLogs implements raft.LogStore; it returns once the entries are on disk.
func (l *Log) StoreLogs(entries []*raft.Log) error {
	return l.w.queue(&writeReq{group: l.group, entries: entries, err: make(chan error, 1)})
}

// DeleteRange implements raft.LogStore. Raft deletes either a prefix (after a
// snapshot) or a suffix (conflicting entries on a follower).
func (l *Log) DeleteRange(min, max uint64) error {
	first, last := l.bounds()
	switch {
	case last == 0 || max < first || min > last:
		return nil
	case min <= first:
		return l.w.write(body(kindCompact, l.group, binary.BigEndian.AppendUint64(nil, max)))
	case max >= last:
		return l.w.write(body(kindTruncate, l.group, binary.BigEndian.AppendUint64(nil, min)))
	}
	return fmt.Errorf("wal: cannot delete [%d, %d] from the middle of [%d, %d]", min, max, first, last)
}

// entryHeader is index, term, type, appended-at and the length of the extensions.
const entryHeader = 8 + 8 + 1 + 8 + 4

func entrySize(group string, e *raft.Log) int {
	return 8 + 3 + len(group) + entryHeader + len(e.Extensions) + len(e.Data)
}

// appendEntry appends e's record, framed for a segment whose crcs start at seed.
func appendEntry(buf []byte, seed uint32, group string, e *raft.Log) []byte {
	var hdr [entryHeader]byte
	binary.BigEndian.PutUint64(hdr[0:], e.Index)
	binary.BigEndian.PutUint64(hdr[8:], e.Term)
	hdr[16] = byte(e.Type)
	var at int64
	if !e.AppendedAt.IsZero() {
		at = e.AppendedAt.UnixNano()
	}
	binary.BigEndian.PutUint64(hdr[17:], uint64(at))
	binary.BigEndian.PutUint32(hdr[25:], uint32(len(e.Extensions)))
	return appendRecord(buf, seed, kindEntry, group, hdr[:], e.Extensions, e.Data)
}

func decodeEntry(b []byte, out *raft.Log) error {
	if len(b) < entryHeader {
		return fmt.Errorf("wal: entry of %d bytes", len(b))
	}
	ext := int(binary.BigEndian.Uint32(b[25:entryHeader]))
	if len(b) < entryHeader+ext {
		return fmt.Errorf("wal: entry extensions cut short")
	}
	*out = raft.Log{Index: binary.BigEndian.Uint64(b), Term: binary.BigEndian.Uint64(b[8:]), Type: raft.LogType(b[16])}
	if at := int64(binary.BigEndian.Uint64(b[17:25])); at != 0 {
		out.AppendedAt = time.Unix(0, at)
	}
	if ext > 0 {
		out.Extensions = b[entryHeader : entryHeader+ext : entryHeader+ext]
	}
	out.Data = b[entryHeader+ext:]
	return nil
}

// Verify reads every live record back from its segment (never from memory) and checks
// it; a damaged one is reported through OnDamage. wait is called with each record's
// size before it is read (to bound the rate) and stops the walk when it returns false.
// It returns how many records it checked.
func (w *WAL) Verify(wait func(n int) bool) int {
	type rec struct {
		group string
		at    loc
	}
	var all []rec
	w.mu.RLock()
	for name, g := range w.groups {
		for _, l := range g.locs {
			all = append(all, rec{name, l})
		}
	}
	w.mu.RUnlock()
	n := 0
	for _, r := range all {
		if !wait(int(r.at.len)) {
			break
		}
		w.mu.RLock()
		_, err := w.readDisk(r.at)
		w.mu.RUnlock()
		n++
		if errors.Is(err, ErrCorrupt) && w.onDamage != nil {
			w.onDamage(r.group, err)
		}
	}
	return n
}
