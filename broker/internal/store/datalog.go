package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/quorumq/quorumq/broker/internal/wal"
	bolt "go.etcd.io/bbolt"
	"golang.org/x/sys/unix"
)

// dataLog keeps message bodies in append-only segment files (data/data-N.seg) shared
// by every partition; data.db keeps only where each run of messages is (see runs.go).
//
// Why not bolt values (the previous format): storing 64 partitions × 100 messages of
// 1 KiB cost bolt 2.3–3.1 s of CPU per GB (a Put and cursor seek per message, page
// allocation and a pwrite per 16 KiB page); appending the same bytes to a file with
// one pwrite per commit and indexing them in bolt cost 0.7 s. Under the produce
// benchmark that was the largest part of a follower's CPU.
//
// The bodies of one data.db commit are written (with O_DIRECT, direct.go) and synced (one
// fdatasync) before the bolt transaction that indexes them commits, and that
// transaction also records the segment's new end. So bolt is the authority: bytes past
// the recorded end (a commit that crashed) are cut at the next open, and an indexed
// run is always on disk.
//
// A segment is deleted once no run points into it (the ref bucket counts runs per
// segment; deleting a group gives its runs back) and it is not the one written to.
type dataLog struct {
	dir string

	mu    sync.Mutex // guards files and end (read by readers, changed by the committer)
	files map[uint32]*os.File
	end   dataPos // durable end of the active segment

	// reading is held (shared) by every read transaction of data.db, from reading the
	// index to reading the bodies it points to, and by the committer while it deletes
	// segments and punches holes: a reader never meets bytes freed after its index
	// view was taken.
	reading sync.RWMutex

	// The transaction being committed (committer goroutine only).
	pend     dataPos  // where the bodies go
	bodies   [][]byte // the Raft entries' own bytes, until written
	size     uint64
	refs     map[uint32]int64 // change of each segment's run count
	released []uint32         // segments whose count reached zero
	holes    []hole           // ranges deleted by retention (retention.go)
	direct   directWriter

	sizes map[uint32]int64 // of the segment files at open, before the active one is extended
}

// segmentSizes returns the size of each segment file in dir.
func segmentSizes(dir string) (map[uint32]int64, error) {
	names, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	out := map[uint32]int64{}
	for _, e := range names {
		if seg, ok := parseSegName(e.Name()); ok {
			fi, err := e.Info()
			if err != nil {
				return nil, fmt.Errorf("store: %w", err)
			}
			out[seg] = fi.Size()
		}
	}
	return out, nil
}

// rewrite writes body at at and syncs it: a repaired message, whose place in the
// segment never changes.
func (l *dataLog) rewrite(at dataPos, body []byte) error {
	f, err := os.OpenFile(filepath.Join(l.dir, segName(at.seg)), os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("store: data log: %w", err)
	}
	defer f.Close()
	if _, err := f.WriteAt(body, int64(at.off)); err != nil {
		return fmt.Errorf("store: data log: %w", err)
	}
	if err := syscall.Fdatasync(int(f.Fd())); err != nil {
		return fmt.Errorf("store: data log: %w", err)
	}
	return nil
}

type dataPos struct {
	seg uint32
	off uint64
}

var (
	bDataLog = []byte("datalog") // top-level in data.db
	keyEnd   = []byte("end")
	bRefs    = []byte("refs") // inside datalog: segment id → runs pointing into it
)

// dataSegmentBytes is when a new segment is started (a variable for tests).
var dataSegmentBytes uint64 = 256 << 20

func segName(seg uint32) string { return fmt.Sprintf("data-%d.seg", seg) }

// openDataLog opens the segments under dir, cuts the active one at the end data.db
// recorded, and deletes segments nothing points into.
func openDataLog(dir string, db *bolt.DB) (*dataLog, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	l := &dataLog{dir: dir, files: map[uint32]*os.File{}}
	live := map[uint32]bool{}
	err := db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bDataLog)
		if err != nil {
			return err
		}
		refs, err := b.CreateBucketIfNotExists(bRefs)
		if err != nil {
			return err
		}
		if v := b.Get(keyEnd); v != nil {
			if len(v) != 12 {
				return fmt.Errorf("store: data log end of %d bytes", len(v))
			}
			l.end = dataPos{binary.BigEndian.Uint32(v), binary.BigEndian.Uint64(v[4:])}
		}
		return refs.ForEach(func(k, v []byte) error {
			if binary.BigEndian.Uint64(v) > 0 {
				live[binary.BigEndian.Uint32(k)] = true
			}
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("store: data log: %w", err)
	}
	names, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	for _, e := range names {
		seg, ok := parseSegName(e.Name())
		if ok && seg != l.end.seg && !live[seg] {
			if err := os.Remove(filepath.Join(dir, e.Name())); err != nil {
				return nil, fmt.Errorf("store: %w", err)
			}
		}
	}
	if l.sizes, err = segmentSizes(dir); err != nil {
		return nil, err
	}
	// Whatever a crashed commit wrote past the recorded end is indexed nowhere; the
	// next commit writes over it.
	if _, err := l.create(l.end.seg); err != nil {
		return nil, err
	}
	return l, nil
}

func parseSegName(name string) (uint32, bool) {
	s, ok := strings.CutPrefix(name, "data-")
	if !ok {
		return 0, false
	}
	s, ok = strings.CutSuffix(s, ".seg")
	n, err := strconv.ParseUint(s, 10, 32)
	return uint32(n), ok && err == nil
}

// create opens segment seg for writing, creating it if needed, sized (sparse) to
// dataSegmentBytes. Why sized: measured here, writing 1.2 GB in 8 MiB pwrites cost
// 3.1 s of system CPU when each write extended the file, 0.36 s inside a file already
// that long (and 1.6 s with fallocate, whose extents are converted at every sync).
func (l *dataLog) create(seg uint32) (*os.File, error) {
	path := filepath.Join(l.dir, segName(seg))
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("store: data log: %w", err)
	}
	fi, err := f.Stat()
	if err == nil && fi.Size() < int64(dataSegmentBytes) {
		if err = f.Truncate(int64(dataSegmentBytes)); err == nil {
			err = wal.SyncDir(l.dir)
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("store: data log: %w", err)
	}
	l.mu.Lock()
	l.files[seg] = f
	l.mu.Unlock()
	return f, nil
}

// file returns segment seg, open for reading.
func (l *dataLog) file(seg uint32) (*os.File, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if f := l.files[seg]; f != nil {
		return f, nil
	}
	f, err := os.Open(filepath.Join(l.dir, segName(seg)))
	if err != nil {
		return nil, fmt.Errorf("store: data log: %w", err)
	}
	l.files[seg] = f
	return f, nil
}

// prefetchBytes is how far past a read of messages the kernel is asked to read ahead.
// The data log is written with O_DIRECT, so what a consumer reads next is on disk, not
// in the page cache, and a consume request read its runs one synchronous pread at a
// time (32 % of a leader's CPU in a 1-client consume benchmark). Two 1 MiB requests'
// worth covers the next request of a consumer reading in order.
const prefetchBytes = 2 << 20

// prefetch asks the kernel to read [at, at+n) of its segment into the page cache in the
// background. Only a hint: errors are ignored, and reads still check every checksum. It
// stops at the durable end, so that no page past it (still a hole, to be written with
// O_DIRECT) is cached.
func (l *dataLog) prefetch(at dataPos, n uint64) {
	l.mu.Lock()
	end := l.end
	l.mu.Unlock()
	if n = prefetchLen(at, end, n); n == 0 {
		return
	}
	f, err := l.file(at.seg)
	if err != nil {
		return
	}
	_ = unix.Fadvise(int(f.Fd()), int64(at.off), int64(n), unix.FADV_WILLNEED)
}

// prefetchLen is how much of [at, at+n) lies before the durable end.
func prefetchLen(at, end dataPos, n uint64) uint64 {
	switch {
	case at.seg < end.seg:
		return n
	case at.seg > end.seg || at.off >= end.off:
		return 0
	}
	return min(n, end.off-at.off)
}

// read reads n bytes at pos.
func (l *dataLog) read(at dataPos, n uint64) ([]byte, error) {
	f, err := l.file(at.seg)
	if err != nil {
		return nil, err
	}
	buf := make([]byte, n)
	if _, err := f.ReadAt(buf, int64(at.off)); err != nil {
		return nil, fmt.Errorf("store: data log segment %d at %d: %w", at.seg, at.off, err)
	}
	return buf, nil
}

// begin starts a transaction's appends at the durable end, in a new segment once the
// active one is full.
func (l *dataLog) begin() {
	l.mu.Lock()
	l.pend = l.end
	l.mu.Unlock()
	if l.pend.off >= dataSegmentBytes {
		l.pend = dataPos{seg: l.pend.seg + 1}
	}
	clear(l.bodies) // of a transaction that failed
	l.bodies, l.size, l.refs, l.released, l.holes = l.bodies[:0], 0, map[uint32]int64{}, nil, nil
}

// add queues msgs for the transaction and returns where they will be. They must not
// change until the transaction is over.
func (l *dataLog) add(msgs [][]byte) dataPos {
	at := dataPos{l.pend.seg, l.pend.off + l.size}
	for _, m := range msgs {
		if len(m) > 0 {
			l.bodies = append(l.bodies, m)
			l.size += uint64(len(m))
		}
	}
	l.refs[at.seg]++
	return at
}

// release gives back runs of a deleted group.
func (l *dataLog) release(counts map[uint32]int64) {
	for seg, n := range counts {
		l.refs[seg] -= n
	}
}

// finish writes and syncs the transaction's bytes and records the new end and run
// counts in tx.
func (l *dataLog) finish(tx *bolt.Tx) error {
	if l.size == 0 && len(l.refs) == 0 {
		return nil
	}
	b := tx.Bucket(bDataLog)
	if l.size > 0 {
		l.mu.Lock()
		f := l.files[l.pend.seg] // the active segment is open for writing since create
		l.mu.Unlock()
		if f == nil {
			var err error
			if f, err = l.create(l.pend.seg); err != nil {
				return err
			}
		}
		if err := l.direct.write(l.dir, l.pend.seg, f, l.bodies, l.pend.off); err != nil {
			return fmt.Errorf("store: data log: %w", err)
		}
		clear(l.bodies) // written: let the entries go before the next commit
		if err := wal.Fdatasync(f, "data"); err != nil {
			return fmt.Errorf("store: data log: %w", err)
		}
		end := binary.BigEndian.AppendUint32(make([]byte, 0, 12), l.pend.seg)
		if err := b.Put(keyEnd, binary.BigEndian.AppendUint64(end, l.pend.off+l.size)); err != nil {
			return err
		}
	}
	refs := b.Bucket(bRefs)
	for seg, d := range l.refs {
		k := binary.BigEndian.AppendUint32(nil, seg)
		var n int64
		if v := refs.Get(k); v != nil {
			n = int64(binary.BigEndian.Uint64(v))
		}
		n += d
		if n < 0 {
			return fmt.Errorf("store: data segment %d: run count %d", seg, n)
		}
		if n == 0 {
			l.released = append(l.released, seg)
			if err := refs.Delete(k); err != nil {
				return err
			}
			continue
		}
		if err := refs.Put(k, u64key(uint64(n))); err != nil {
			return err
		}
	}
	// The segment this transaction moves on from may hold nothing live any more (it
	// was kept only because it was being written).
	if l.size > 0 && l.pend.off == 0 && l.pend.seg > 0 {
		if prev := l.pend.seg - 1; refs.Get(binary.BigEndian.AppendUint32(nil, prev)) == nil {
			l.released = append(l.released, prev)
		}
	}
	return nil
}

// committed makes the transaction's end the durable one and deletes the segments it
// released (after the commit: a crash before leaves them to the next open).
func (l *dataLog) committed() {
	if len(l.released) > 0 || len(l.holes) > 0 {
		l.reading.Lock()
		defer l.reading.Unlock()
	}
	l.mu.Lock()
	if l.size > 0 {
		l.end = dataPos{l.pend.seg, l.pend.off + l.size}
	}
	sort.Slice(l.released, func(i, j int) bool { return l.released[i] < l.released[j] })
	gone := map[uint32]bool{}
	for _, seg := range l.released {
		if seg == l.end.seg {
			continue
		}
		if f := l.files[seg]; f != nil {
			f.Close()
			delete(l.files, seg)
		}
		os.Remove(filepath.Join(l.dir, segName(seg)))
		gone[seg] = true
	}
	l.mu.Unlock()
	l.punch(gone)
}

// pwritev writes bufs back to back at off, IOV_MAX buffers per call.
func pwritev(f *os.File, bufs [][]byte, off uint64) error {
	const iovMax = 1024
	fd := int(f.Fd())
	for len(bufs) > 0 {
		chunk := bufs[:min(len(bufs), iovMax)]
		n, err := unix.Pwritev(fd, chunk, int64(off))
		if err != nil {
			return err
		}
		if n == 0 {
			return io.ErrShortWrite
		}
		off += uint64(n)
		// A short write: drop what was written and go on from there.
		for n > 0 && len(bufs) > 0 {
			if n < len(bufs[0]) {
				bufs[0] = bufs[0][n:]
				break
			}
			n -= len(bufs[0])
			bufs = bufs[1:]
		}
	}
	return nil
}

func (l *dataLog) close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	err := l.direct.close()
	for seg, f := range l.files {
		err = errors.Join(err, f.Close())
		delete(l.files, seg)
	}
	return err
}
