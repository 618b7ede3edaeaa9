package wal

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"sort"
)

// Replay tells a crash from damage. A crash interrupts at most the last batch of the
// newest segment, which was never acknowledged: bytes there that are not records, with
// no record after them, are cut silently. Anything else is damage to records that may
// have been acknowledged: a bad record followed by good ones, bytes that are not
// records in an older segment (which ends exactly at its last record, see finish), a
// missing segment, or a group holding less than the watermark says it had synced
// (watermark.go). Raft logs must stay contiguous, so a damaged group keeps its entries
// up to the damage and skips the later ones that do not follow on; the group is
// recorded as needing entries up to what it had (Log.Damage) until it has them again.
// Other groups are not held back: a group is named damaged only when its own records
// are (by the group of the bad record when its frame is intact, by a gap in its
// indexes, or by the watermark), and all groups only when a bad record of unknown
// group lies past the last watermark.

// need is what a damaged group had before: it holds less until its log reaches upTo.
type need struct {
	upTo uint64
	why  string
}

type replayState struct {
	wm      *watermark
	checked bool   // the group states were compared with wm
	damage  string // where the first damage is ("" while none)
	covered bool   // wm was compared after the first damage
	unknown bool   // a damaged record's group is unknown
}

func (w *WAL) replay() error {
	if old, _ := filepath.Glob(filepath.Join(w.dir, "wal-*.log")); len(old) > 0 {
		return fmt.Errorf("wal: %s is a segment of the first WAL format, from a development build before any release, which this version does not read: move %s aside and start the broker again (its replicas catch up from their peers)", old[0], w.dir)
	}
	names, err := filepath.Glob(filepath.Join(w.dir, "wal-*.seg"))
	if err != nil {
		return err
	}
	sort.Strings(names) // wal-%08d: by id
	wm, err := loadWatermark(w.dir)
	if err != nil {
		return err
	}
	rs := &replayState{wm: wm}
	if wm != nil {
		w.wmSeq = wm.seq
		for name, g := range wm.groups {
			if g.need > 0 {
				w.markDamaged(name, "damaged before the last restart, not yet caught up", g.need)
			}
		}
	}
	for i, name := range names {
		var id uint32
		if _, err := fmt.Sscanf(filepath.Base(name), "wal-%08d.seg", &id); err != nil {
			return fmt.Errorf("wal: unexpected file %s", name)
		}
		if i > 0 && w.segs[i-1].id == id {
			return fmt.Errorf("wal: two files for segment %d", id)
		}
		if i > 0 && w.segs[i-1].id+1 != id {
			rs.damaged(w, fmt.Sprintf("segments %d to %d are missing", w.segs[i-1].id+1, id-1), "")
		}
		flags := os.O_RDWR
		if w.readOnly {
			flags = os.O_RDONLY
		}
		f, err := os.OpenFile(name, flags, 0o644)
		if err != nil {
			return fmt.Errorf("wal: %w", err)
		}
		s := &segment{id: id, path: name, f: f, seed: segSeed(id)}
		w.segs = append(w.segs, s)
		fi, err := f.Stat()
		if err != nil {
			return fmt.Errorf("wal: %w", err)
		}
		data := make([]byte, fi.Size())
		if _, err := f.ReadAt(data, 0); err != nil {
			return fmt.Errorf("wal: reading %s: %w", name, err)
		}
		newest := i == len(names)-1
		s.size = int64(w.replaySegment(rs, s, data, newest))
		if newest && !w.readOnly && !allZero(data[s.size:]) {
			// A torn tail (or what a reused file held before): new records follow the
			// last good one.
			if err := f.Truncate(s.size); err != nil {
				return fmt.Errorf("wal: cutting torn tail of %s: %w", name, err)
			}
			fi, err = f.Stat()
			if err != nil {
				return fmt.Errorf("wal: %w", err)
			}
		}
		s.alloc = fi.Size()
	}
	if wm != nil && !rs.checked && (len(w.segs) == 0 || wm.seg >= w.segs[0].id) {
		rs.check(w, fmt.Sprintf("the WAL ends before what it had synced (segment %d, byte %d)", wm.seg, wm.off))
	}
	if rs.unknown && !rs.covered {
		for name, g := range w.groups {
			w.markDamaged(name, "a record of unknown group is damaged: "+rs.damage, g.last()+1)
		}
	}
	return nil
}

// replaySegment applies the good records of data, a whole segment, and returns where
// the last one ends.
func (w *WAL) replaySegment(rs *replayState, s *segment, data []byte, newest bool) int {
	rs.reached(w, s.id, 0)
	off, end := 0, 0
	for off < len(data) {
		if n, ok := validAt(data, off, s.seed); ok {
			w.replayRecord(rs, s, uint32(off), uint32(n), data[off+8:off+n])
			off += n
			end = off
			rs.reached(w, s.id, uint64(off))
			continue
		}
		next := nextValid(data, off+1, s.seed)
		if next < 0 {
			if !newest {
				rs.damaged(w, fmt.Sprintf("segment %d ends in %d bytes that are not records (at byte %d)", s.id, len(data)-off, off), "")
			}
			return end
		}
		rs.damaged(w, fmt.Sprintf("segment %d has a bad record at byte %d", s.id, off), recordGroup(data, off, next))
		off = next
	}
	return end
}

// replayRecord applies one good record. After damage, an entry that does not follow
// on from its group's last one is skipped: the group lost what came between.
func (w *WAL) replayRecord(rs *replayState, s *segment, off, n uint32, body []byte) {
	rec, _ := parsed(off, n, body) // validAt checked it
	if rs.damage != "" && rec.kind == kindEntry {
		if g := w.groups[rec.group]; g != nil && len(g.locs) > 0 && rec.idx > g.last()+1 {
			w.markDamaged(rec.group, fmt.Sprintf("entries %d to %d are missing after %s", g.last()+1, rec.idx-1, rs.damage), rec.idx)
			return
		}
	}
	w.apply(s, rec)
}

// damaged records damage at the current position; group is the damaged record's,
// when its frame is intact and it names a known group.
func (rs *replayState) damaged(w *WAL, where, group string) {
	if rs.damage == "" {
		rs.damage = where
	}
	if g := w.groups[group]; g != nil {
		w.markDamaged(group, where, g.last()+1)
	} else {
		rs.unknown = true
	}
}

// reached compares the groups with the watermark once replay reaches its position.
func (rs *replayState) reached(w *WAL, seg uint32, off uint64) {
	switch {
	case rs.wm == nil || rs.checked:
	case seg > rs.wm.seg && len(w.segs) == 1:
		// The watermark's segment was deleted since (it held nothing live): there is
		// nothing to compare with.
		rs.checked = true
	case seg > rs.wm.seg || seg == rs.wm.seg && off >= rs.wm.off:
		rs.check(w, "")
	}
}

func (rs *replayState) check(w *WAL, why string) {
	rs.checked, rs.covered = true, rs.damage != ""
	for name, want := range rs.wm.groups {
		var first, last uint64
		if g := w.groups[name]; g != nil && len(g.locs) > 0 {
			first, last = g.first, g.last()
		}
		if want.last > last || want.last > 0 && first > want.first {
			reason := why
			if reason == "" {
				reason = fmt.Sprintf("holds entries %d to %d where it had synced %d to %d", first, last, want.first, want.last)
			}
			w.markDamaged(name, reason, want.last)
		}
	}
}

// markDamaged records that group had entries up to upTo.
func (w *WAL) markDamaged(group, why string, upTo uint64) {
	n, ok := w.needs[group]
	if !ok {
		n.why = why
	}
	n.upTo = max(n.upTo, upTo)
	w.needs[group] = n
}

// validAt returns the length of the record at off if it is one: its frame fits, its crc
// checks out from seed and its body parses.
func validAt(data []byte, off int, seed uint32) (int, bool) {
	if len(data)-off < 8 {
		return 0, false
	}
	n := uint64(binary.BigEndian.Uint32(data[off+4:]))
	if n < 3 || n > uint64(len(data)-off-8) {
		return 0, false
	}
	body := data[off+8 : off+8+int(n)]
	if crc32.Update(seed, crcTable, body) != binary.BigEndian.Uint32(data[off:]) {
		return 0, false
	}
	if _, _, _, err := parseRecord(body); err != nil {
		return 0, false
	}
	return 8 + int(n), true
}

// nextValid returns the offset of the first record at or after from, or -1.
func nextValid(data []byte, from int, seed uint32) int {
	for off := from; off+8 < len(data); off++ {
		if binary.BigEndian.Uint64(data[off:]) == 0 {
			// A run of zeros (the preallocated rest of a segment) holds no record
			// until 7 bytes before its end.
			j := off + 8
			for j < len(data) && data[j] == 0 {
				j++
			}
			off = j - 8
			continue
		}
		if _, ok := validAt(data, off, seed); ok {
			return off
		}
	}
	return -1
}

// recordGroup returns the group of the bad record at off if its frame is intact (its
// length leads exactly to the next good record at next), else "".
func recordGroup(data []byte, off, next int) string {
	if next-off < 8+3 || int(binary.BigEndian.Uint32(data[off+4:])) != next-off-8 {
		return ""
	}
	body := data[off+8 : next]
	gl := int(binary.BigEndian.Uint16(body[1:3]))
	if len(body) < 3+gl {
		return ""
	}
	return string(body[3 : 3+gl])
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
