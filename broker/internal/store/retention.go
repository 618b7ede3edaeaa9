package store

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/sys/unix"

	"github.com/quorumq/quorumq/broker/partition"
)

// Retention deletes a prefix of a partition (partition.Truncate). In data.db the runs
// before the new start are deleted and a run that straddles it is cut to begin there.
// The bodies' bytes in the data log are given back to the file system at once by
// punching holes in the segment (fallocate PUNCH_HOLE keeps the file's size and frees
// its blocks): segments are shared by every partition of the broker, so one partition's
// dead bytes sit between other partitions' live ones and waiting for a whole segment
// to die would keep them for as long as the busiest partition keeps its data. Only
// whole blocks inside a deleted range are punched; a segment nothing points into any
// more is deleted as before (datalog.go).
//
// The stamps bucket ("time") records when the entries holding the messages were
// proposed (partition.Stamp): offset → Unix ms, at most one per stampEvery, which a
// partition's leader reads to turn a retention time into an offset.

var bTime = []byte("time")

// stampEvery is the granularity of the stamps kept: a stamp closer than this to the
// previous one is not stored, so messages between two stamps were proposed within
// stampEvery after the first.
const stampEvery = 1000 // ms

// hole is a deleted range of a data log segment.
type hole struct {
	at dataPos
	n  uint64
}

// drop gives back the bytes of a deleted range of a run; whole says that no part of
// the run is left, so it no longer points into its segment.
func (l *dataLog) drop(at dataPos, n uint64, whole bool) {
	if whole {
		l.refs[at.seg]--
	}
	if n > 0 {
		l.holes = append(l.holes, hole{at, n})
	}
}

// punch frees the whole blocks of the transaction's deleted ranges in the segments
// still there. The caller holds l.reading: no reader is between reading the index and
// reading the bodies it points to.
func (l *dataLog) punch(gone map[uint32]bool) {
	for _, h := range l.holes {
		from := (h.at.off + directAlign - 1) &^ (directAlign - 1)
		to := (h.at.off + h.n) &^ (directAlign - 1)
		if gone[h.at.seg] || to <= from {
			continue
		}
		f, err := os.OpenFile(filepath.Join(l.dir, segName(h.at.seg)), os.O_WRONLY, 0)
		if err != nil {
			continue // deleted meanwhile
		}
		// A file system without hole punching keeps the blocks until the segment goes.
		_ = unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, int64(from), int64(to-from))
		f.Close()
	}
}

// dropPrefix deletes the group's messages before offset start, and its stamps before
// start but the last (moved to start: it still dates the messages from there).
func dropPrefix(dl *dataLog, root *bolt.Bucket, start uint64) error {
	idx := root.Bucket(bIdx)
	type cut struct {
		key  []byte
		keep []byte // the run's remainder from start, nil when none
	}
	var cuts []cut
	c := idx.Cursor()
	for k, v := c.First(); k != nil && binary.BigEndian.Uint64(k) < start; k, v = c.Next() {
		r, err := parseRun(k, v)
		if err != nil {
			// Damaged: what it points to is unknown (its segment keeps the count). Past
			// start, the rest of its range stays damaged until repaired.
			cut := cut{key: k}
			if _, to := damagedRange(root, k); to > start {
				cut.keep = damagedMark
			}
			cuts = append(cuts, cut)
			continue
		}
		if end := r.first + uint64(r.count()); end <= start {
			dl.drop(r.at, r.end(r.count()-1), true)
			cuts = append(cuts, cut{key: k})
			continue
		}
		i := int(start - r.first)
		dl.drop(r.at, r.end(i-1), false)
		cuts = append(cuts, cut{key: k, keep: r.from(i)})
	}
	for _, ct := range cuts {
		if err := idx.Delete(ct.key); err != nil {
			return err
		}
		if ct.keep != nil && (idx.Get(u64key(start)) == nil || !bytes.Equal(ct.keep, damagedMark)) {
			if err := idx.Put(u64key(start), ct.keep); err != nil {
				return err
			}
		}
	}
	return deleteBelow(root.Bucket(bTime), start, true)
}

// deleteBelow deletes the keys of b (offsets) below start; with keepLast, the last of
// them moves to start unless start has a key of its own.
func deleteBelow(b *bolt.Bucket, start uint64, keepLast bool) error {
	if b == nil {
		return nil
	}
	var keys [][]byte
	var last []byte
	c := b.Cursor()
	for k, v := c.First(); k != nil && binary.BigEndian.Uint64(k) < start; k, v = c.Next() {
		keys = append(keys, k)
		last = v
	}
	if keepLast && last != nil && b.Get(u64key(start)) == nil {
		if err := b.Put(u64key(start), append([]byte(nil), last...)); err != nil {
			return err
		}
	}
	for _, k := range keys {
		if err := b.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

// from returns the encoded run of messages [i, count) of r.
func (r run) from(i int) []byte {
	base := r.end(i - 1)
	v := binary.BigEndian.AppendUint32(make([]byte, 0, 16+8*(r.count()-i)), r.at.seg)
	v = binary.BigEndian.AppendUint64(v, r.at.off+base)
	v = binary.BigEndian.AppendUint32(v, uint32(r.count()-i))
	for j := i; j < r.count(); j++ {
		v = binary.BigEndian.AppendUint32(v, uint32(r.end(j)-base))
	}
	if r.crcs != nil {
		v = append(v, r.crcs[4*i:]...)
	}
	return sealRun(u64key(r.first+uint64(i)), v)
}

// putStamps records stamps, skipping those within stampEvery of the last one kept.
func putStamps(root *bolt.Bucket, stamps []partition.Stamp) error {
	if len(stamps) == 0 {
		return nil
	}
	b, err := root.CreateBucketIfNotExists(bTime)
	if err != nil {
		return err
	}
	var last int64
	have := false
	if k, v := b.Cursor().Last(); k != nil && len(v) == 8 {
		last, have = int64(binary.BigEndian.Uint64(v)), true
	}
	for _, s := range stamps {
		if have && s.At < last+stampEvery {
			continue
		}
		if err := b.Put(u64key(s.Offset), u64key(uint64(s.At))); err != nil {
			return err
		}
		last, have = s.At, true
	}
	return nil
}

// Cutoff returns the offset before which retention deletes the partition's messages
// [start, next), which hold bytes bytes: those proposed at or before olderThan (Unix
// ms; 0: no time limit), and the oldest ones past the newest keepBytes (0: no size
// limit). It reads only the index and the stamps. Messages older than the first stamp
// kept (written before stamps, or received in a snapshot) count as proposed when it
// was: they are deleted no earlier than the messages after them.
func (p *Partition) Cutoff(start, next, bytes uint64, olderThan int64, keepBytes uint64) (uint64, error) {
	before := start
	err := p.g.viewData(func(root *bolt.Bucket) error {
		if olderThan > 0 {
			if b := root.Bucket(bTime); b != nil {
				seen := false
				young := next
				c := b.Cursor()
				for k, v := c.First(); k != nil; k, v = c.Next() {
					if len(v) == 8 && int64(binary.BigEndian.Uint64(v))+stampEvery > olderThan {
						young = binary.BigEndian.Uint64(k)
						break
					}
					seen = true
				}
				if seen {
					before = max(before, min(young, next))
				}
			}
		}
		if keepBytes > 0 && bytes > keepBytes {
			left := bytes
			end, err := walk(root, start, func(r run, i int) (int, bool, error) {
				took := 0
				for ; i+took < r.count() && left > keepBytes; took++ {
					left -= r.size(i + took)
				}
				return took, left > keepBytes, nil
			})
			if err != nil {
				return err
			}
			before = max(before, min(end, next))
		}
		return nil
	})
	return before, err
}
