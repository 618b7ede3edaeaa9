package wal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// The watermark is what the WAL had synced: a position (segment, end of its records)
// and each group's first and last index there, plus what damaged groups still need.
// Replay compares the groups with it on reaching that position (replay.go): a torn
// tail looks like a crash whether or not its records were acknowledged, and a
// segment cut at a record boundary looks complete; the watermark tells them apart.
//
// It is written off the append path, at most every watermarkEvery, and once more at
// Close, alternately into two files overwritten in place (one fdatasync each, no
// rename or directory sync: those commit the file system's journal, which held up the
// WAL's own syncs), so one of them is always whole; the newer whole one counts. So it
// lags the log by up to that much: records acknowledged since the last watermark and
// then lost without a trace (a clean cut of the newest segment) look like a crash.
//
// File: length u32 of what follows, then version u8, sequence u64, segment u32, offset
// u64, count u32, then per group len(name) u16, name, first u64, last u64, need u64;
// crc32c of all of it from the version on last. Bytes after that are left from a
// longer watermark before.
const watermarkVersion = 1

var watermarkNames = [2]string{"wal-synced-a", "wal-synced-b"}

// watermarkEvery is how often the watermark is written while the log changes (a
// variable for tests).
var watermarkEvery = 200 * time.Millisecond

type watermark struct {
	seq    uint64
	seg    uint32
	off    uint64
	groups map[string]wmGroup
}

type wmGroup struct{ first, last, need uint64 }

// encode returns the file image, in buf's array when it is big enough: the writer
// reuses one (at 6,000 groups a watermark is 300 KB, written five times a second).
func (m *watermark) encode(buf []byte) []byte {
	buf = append(buf[:0], 0, 0, 0, 0, watermarkVersion) // the length goes first, once known
	buf = binary.BigEndian.AppendUint64(buf, m.seq)
	buf = binary.BigEndian.AppendUint32(buf, m.seg)
	buf = binary.BigEndian.AppendUint64(buf, m.off)
	buf = binary.BigEndian.AppendUint32(buf, uint32(len(m.groups)))
	for name, g := range m.groups {
		buf = binary.BigEndian.AppendUint16(buf, uint16(len(name)))
		buf = append(buf, name...)
		buf = binary.BigEndian.AppendUint64(buf, g.first)
		buf = binary.BigEndian.AppendUint64(buf, g.last)
		buf = binary.BigEndian.AppendUint64(buf, g.need)
	}
	buf = binary.BigEndian.AppendUint32(buf, crc32.Checksum(buf[4:], crcTable))
	binary.BigEndian.PutUint32(buf, uint32(len(buf)-4))
	return buf
}

var errBadWatermark = errors.New("wal: the watermark file is damaged")

func decodeWatermark(b []byte) (*watermark, error) {
	if len(b) < 4 || uint64(len(b)-4) < uint64(binary.BigEndian.Uint32(b)) {
		return nil, errBadWatermark
	}
	b = b[4 : 4+binary.BigEndian.Uint32(b)]
	if len(b) < 29 || crc32.Checksum(b[:len(b)-4], crcTable) != binary.BigEndian.Uint32(b[len(b)-4:]) || b[0] != watermarkVersion {
		return nil, errBadWatermark
	}
	m := &watermark{seq: binary.BigEndian.Uint64(b[1:]), seg: binary.BigEndian.Uint32(b[9:]), off: binary.BigEndian.Uint64(b[13:]),
		groups: map[string]wmGroup{}}
	n := binary.BigEndian.Uint32(b[21:])
	rest := b[25 : len(b)-4]
	for range n {
		if len(rest) < 2 || len(rest) < 2+int(binary.BigEndian.Uint16(rest))+24 {
			return nil, errBadWatermark
		}
		l := int(binary.BigEndian.Uint16(rest))
		name, f := string(rest[2:2+l]), rest[2+l:]
		m.groups[name] = wmGroup{binary.BigEndian.Uint64(f), binary.BigEndian.Uint64(f[8:]), binary.BigEndian.Uint64(f[16:])}
		rest = f[24:]
	}
	if len(rest) != 0 {
		return nil, errBadWatermark
	}
	return m, nil
}

// loadWatermark reads the newer whole watermark, nil if there is none. A damaged one
// is treated as none: it only ever makes damage visible, and the segments' crcs still
// hold.
func loadWatermark(dir string) (*watermark, error) {
	var newest *watermark
	for _, name := range watermarkNames {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("wal: %w", err)
		}
		if m, err := decodeWatermark(b); err == nil && (newest == nil || m.seq > newest.seq) {
			newest = m
		}
	}
	return newest, nil
}

// captureWatermark fills m with the synced state (what commitBatch indexed, after its
// sync), reusing its map; false when there is no segment yet.
func (w *WAL) captureWatermark(m *watermark) bool {
	w.mu.RLock()
	defer w.mu.RUnlock()
	if len(w.segs) == 0 {
		return false
	}
	active := w.segs[len(w.segs)-1]
	m.seg, m.off = active.id, uint64(active.size)
	if m.groups == nil {
		m.groups = make(map[string]wmGroup, len(w.groups)+len(w.needs))
	}
	clear(m.groups)
	for name, g := range w.groups {
		if len(g.locs) > 0 {
			m.groups[name] = wmGroup{first: g.first, last: g.last()}
		}
	}
	for name, n := range w.needs {
		g := m.groups[name]
		g.need = n.upTo
		m.groups[name] = g
	}
	return true
}

// saveWatermark writes the current watermark over the older of the two files (never
// two at once: Close waits for the background writer first).
func (w *WAL) saveWatermark() error {
	m := &w.wm
	if !w.captureWatermark(m) {
		return nil
	}
	w.wmSeq++
	m.seq = w.wmSeq
	f := w.wmFiles[m.seq%2]
	if f == nil {
		var err error
		if f, err = os.OpenFile(filepath.Join(w.dir, watermarkNames[m.seq%2]), os.O_CREATE|os.O_WRONLY, 0o644); err != nil {
			return fmt.Errorf("wal: %w", err)
		}
		if err := SyncDir(w.dir); err != nil {
			f.Close()
			return err
		}
		w.wmFiles[m.seq%2] = f
	}
	w.wmBuf = m.encode(w.wmBuf)
	if _, err := f.WriteAt(w.wmBuf, 0); err != nil {
		return fmt.Errorf("wal: %w", err)
	}
	if err := syscall.Fdatasync(int(f.Fd())); err != nil {
		return fmt.Errorf("wal: %w", err)
	}
	return nil
}

// watermarks writes the watermark every watermarkEvery while the log changes.
func (w *WAL) watermarks() {
	defer close(w.wmStopped)
	t := time.NewTicker(watermarkEvery)
	defer t.Stop()
	saved := w.writes.Load()
	for {
		select {
		case <-w.writer.Closing():
			return
		case <-t.C:
		}
		if n := w.writes.Load(); n != saved && w.saveWatermark() == nil {
			saved = n
		}
	}
}

// Damage implements the election package's DamageReporter: non-nil while the group
// holds fewer entries than it had before its records were damaged (replay.go), so it
// must not vote or lead until it has caught up.
func (l *Log) Damage() error {
	l.w.mu.RLock()
	defer l.w.mu.RUnlock()
	n, ok := l.w.needs[l.group]
	if !ok {
		return nil
	}
	var last uint64
	if g := l.w.groups[l.group]; g != nil {
		last = g.last()
	}
	return fmt.Errorf("wal: the log of %s is damaged (%s): it holds entries up to %d, it had %d", l.group, n.why, last, n.upTo)
}

// Damaged lists the groups that hold less than they had, with why (for tools).
func (w *WAL) Damaged() map[string]string {
	w.mu.RLock()
	defer w.mu.RUnlock()
	out := map[string]string{}
	for name, n := range w.needs {
		out[name] = fmt.Sprintf("%s; needs entries up to %d", n.why, n.upTo)
	}
	return out
}

// Check replays the WAL in dir without changing anything (its broker must be stopped)
// and returns how many segments and groups it holds and the damaged groups with why.
func Check(dir string) (segments, groups int, damaged map[string]string, err error) {
	if _, err := os.Stat(dir); err != nil {
		return 0, 0, nil, fmt.Errorf("wal: %w", err)
	}
	w := newWAL(dir)
	w.readOnly = true
	defer w.closeFiles()
	if err := w.replay(); err != nil {
		return 0, 0, nil, err
	}
	return len(w.segs), len(w.groups), w.Damaged(), nil
}
