package wal

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

func open(t testing.TB, dir string) *WAL {
	t.Helper()
	w, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func logOf(t testing.TB, w *WAL, group string) *Log {
	t.Helper()
	l, err := w.Log(group)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func entries(from, to uint64, term uint64) []*raft.Log {
	var out []*raft.Log
	for i := from; i <= to; i++ {
		out = append(out, &raft.Log{Index: i, Term: term, Type: raft.LogCommand, Data: []byte(fmt.Sprintf("d%d-%d", i, term))})
	}
	return out
}

// smallSegments makes the WALs the test opens rotate every n bytes.
func smallSegments(t testing.TB, n int64) {
	old := segmentBytes
	segmentBytes = n
	t.Cleanup(func() { segmentBytes = old })
}

func bounds(t testing.TB, l *Log) (uint64, uint64) {
	first, _ := l.FirstIndex()
	last, _ := l.LastIndex()
	return first, last
}

func checkEntry(t testing.TB, l *Log, i, term uint64) {
	t.Helper()
	var e raft.Log
	if err := l.GetLog(i, &e); err != nil {
		t.Fatalf("GetLog(%d): %v", i, err)
	}
	if e.Index != i || e.Term != term || string(e.Data) != fmt.Sprintf("d%d-%d", i, term) {
		t.Fatalf("GetLog(%d) = %+v", i, e)
	}
}

func TestLogStore(t *testing.T) {
	dir := t.TempDir()
	w := open(t, dir)
	a, b := logOf(t, w, "p/t/0"), logOf(t, w, "p/t/1")
	steps := []struct {
		name        string
		do          func() error
		first, last uint64
	}{
		{"empty", func() error { return nil }, 0, 0},
		{"append", func() error { return a.StoreLogs(entries(1, 10, 1)) }, 1, 10},
		{"other group", func() error { return b.StoreLogs(entries(1, 3, 1)) }, 1, 10},
		{"compact a prefix", func() error { return a.DeleteRange(1, 4) }, 5, 10},
		{"truncate a suffix", func() error { return a.DeleteRange(9, 10) }, 5, 8},
		{"overwrite from 8 in a new term", func() error { return a.StoreLogs(entries(8, 12, 2)) }, 5, 12},
		{"a gap starts over (after a snapshot install)", func() error { return a.StoreLogs(entries(20, 21, 3)) }, 20, 21},
		{"append again", func() error { return a.StoreLogs(entries(22, 25, 3)) }, 20, 25},
	}
	for _, s := range steps {
		if err := s.do(); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if f, l := bounds(t, a); f != s.first || l != s.last {
			t.Fatalf("%s: first %d last %d, want %d %d", s.name, f, l, s.first, s.last)
		}
	}
	check := func(w *WAL) {
		a, b := logOf(t, w, "p/t/0"), logOf(t, w, "p/t/1")
		checkEntry(t, a, 20, 3)
		checkEntry(t, a, 25, 3)
		checkEntry(t, b, 2, 1)
		var e raft.Log
		if err := a.GetLog(19, &e); !errors.Is(err, raft.ErrLogNotFound) {
			t.Fatalf("GetLog(19) = %v", err)
		}
		if f, l := bounds(t, b); f != 1 || l != 3 {
			t.Fatalf("group b: %d..%d", f, l)
		}
	}
	check(w)
	if err := a.DeleteRange(21, 22); err == nil {
		t.Fatal("deleting from the middle succeeded")
	}
	w.Close()
	w = open(t, dir) // replay gives the same logs
	defer w.Close()
	check(w)
	if err := w.Drop("p/t/1"); err != nil {
		t.Fatal(err)
	}
	if f, l := bounds(t, logOf(t, w, "p/t/1")); f != 0 || l != 0 {
		t.Fatalf("dropped group: %d..%d", f, l)
	}
}

// lastRecords returns the active segment's file and where its records end (the file
// may go on: a preallocated segment is zeros after its records).
func lastRecords(w *WAL) (string, int64) {
	w.mu.RLock()
	defer w.mu.RUnlock()
	s := w.segs[len(w.segs)-1]
	return s.path, s.size
}

// TestTornTail cuts or corrupts the last record in several ways: replay keeps every
// record before it, drops it, and later appends follow the good prefix. The last
// segment may be a growing file or a preallocated one.
func TestTornTail(t *testing.T) {
	damage := []struct {
		name string
		do   func(path string, end, lastLen int64)
	}{
		{"cut in the header", func(p string, end, n int64) { truncate(t, p, end-(n-3)) }},
		{"cut in the body", func(p string, end, n int64) { truncate(t, p, end-n/2) }},
		{"cut one byte", func(p string, end, n int64) { truncate(t, p, end-1) }},
		{"flipped byte", func(p string, end, n int64) { flip(t, p, end-n/2) }},
		{"garbage after", func(p string, end, n int64) { writeAt(t, p, end, []byte{0, 0, 0, 9, 0, 0, 0, 200, 1, 2}) }},
		{"zeros after", func(p string, end, n int64) { writeAt(t, p, end, make([]byte, 4096)) }},
	}
	for _, d := range damage {
		t.Run(d.name, func(t *testing.T) {
			dir := t.TempDir()
			w := open(t, dir)
			l := logOf(t, w, "g")
			if err := l.StoreLogs(entries(1, 5, 1)); err != nil {
				t.Fatal(err)
			}
			last := int64(entrySize("g", entries(6, 6, 1)[0]))
			if err := l.StoreLogs(entries(6, 6, 1)); err != nil {
				t.Fatal(err)
			}
			path, end := lastRecords(w)
			w.Close()
			d.do(path, end, last)

			w = open(t, dir)
			l = logOf(t, w, "g")
			_, lastIdx := bounds(t, l)
			if d.name == "garbage after" || d.name == "zeros after" {
				if lastIdx != 6 {
					t.Fatalf("last %d, want 6", lastIdx)
				}
			} else if lastIdx != 5 {
				t.Fatalf("last %d, want 5 (the damaged entry dropped)", lastIdx)
			}
			if err := l.StoreLogs(entries(lastIdx+1, lastIdx+2, 2)); err != nil {
				t.Fatal(err)
			}
			w.Close()
			w = open(t, dir)
			defer w.Close()
			l = logOf(t, w, "g")
			checkEntry(t, l, 5, 1)
			checkEntry(t, l, lastIdx+2, 2)
		})
	}
}

func truncate(t *testing.T, path string, size int64) {
	if err := os.Truncate(path, size); err != nil {
		t.Fatal(err)
	}
}

func flip(t *testing.T, path string, at int64) {
	b := make([]byte, 1)
	readAt(t, path, at, b)
	writeAt(t, path, at, []byte{b[0] ^ 0xff})
}

func readAt(t *testing.T, path string, at int64, b []byte) {
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.ReadAt(b, at); err != nil {
		t.Fatal(err)
	}
}

func writeAt(t *testing.T, path string, at int64, b []byte) {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(b, at); err != nil {
		t.Fatal(err)
	}
}

// TestSegments: with small segments, compaction deletes old segment files, a corrupt
// record in a segment that is not the last one is damage, and replay after GC is exact.
func TestSegments(t *testing.T) {
	smallSegments(t, 200)
	dir := t.TempDir()
	w := open(t, dir)
	a, b := logOf(t, w, "a"), logOf(t, w, "b")
	for i := uint64(1); i <= 40; i++ {
		a.StoreLogs(entries(i, i, 1))
		if i%10 == 0 {
			b.StoreLogs(entries(i/10, i/10, 1))
		}
	}
	a.DeleteRange(1, 35)
	b.DeleteRange(1, 3)
	a.StoreLogs(entries(41, 41, 1)) // a write after the compaction collects what it freed
	// What holds a's 36..41 and b's 4 and the two compaction records: four records fit
	// in a segment, fewer when one is rotated early because a reused file was ready.
	if n := w.Segments(); n > 5 {
		t.Fatalf("%d segments after compaction", n)
	}
	w.Close()
	w = open(t, dir)
	a, b = logOf(t, w, "a"), logOf(t, w, "b")
	if f, l := bounds(t, a); f != 36 || l != 41 {
		t.Fatalf("a after GC and replay: %d..%d", f, l)
	}
	if f, l := bounds(t, b); f != 4 || l != 4 {
		t.Fatalf("b after GC and replay: %d..%d", f, l)
	}
	checkEntry(t, a, 36, 1)
	p, off, n := recordAt(t, w, "a", 36)
	w.Close()

	flip(t, p, off+n-1)
	w = open(t, dir)
	defer w.Close()
	if err := logOf(t, w, "a").Damage(); err == nil || len(w.Damaged()) != 1 {
		t.Fatalf("a corrupt segment before the last one: %v, %v", err, w.Damaged())
	}
}

// TestReusedSegment: a dead segment becomes the next one without being zeroed; after
// a crash (no clean cut of the active segment), what it held before is not replayed.
func TestReusedSegment(t *testing.T) {
	smallSegments(t, 300)
	dir := t.TempDir()
	// Every record has the same size, so the reused file's old records start exactly
	// where the new ones end.
	fixed := func(from, to uint64) []*raft.Log {
		var out []*raft.Log
		for i := from; i <= to; i++ {
			out = append(out, &raft.Log{Index: i, Term: 1, Type: raft.LogCommand, Data: []byte(fmt.Sprintf("%08d", i))})
		}
		return out
	}
	w := open(t, dir)
	a, b := logOf(t, w, "a"), logOf(t, w, "b")
	if err := a.StoreLogs(fixed(1, 2)); err != nil {
		t.Fatal(err)
	}
	// Churn until the active segment is a file an earlier segment used.
	inodes := map[uint64]string{}
	reusedActive := func() bool {
		w.mu.RLock()
		defer w.mu.RUnlock()
		for i, s := range w.segs {
			fi, err := s.f.Stat()
			if err != nil {
				t.Fatal(err)
			}
			ino := fi.Sys().(*syscall.Stat_t).Ino
			if first, ok := inodes[ino]; !ok {
				inodes[ino] = s.path
			} else if first != s.path && i == len(w.segs)-1 && s.size < w.segBytes/2 {
				return true
			}
		}
		return false
	}
	var i uint64
	for i = 3; !reusedActive(); i++ {
		if i > 1000 {
			t.Fatal("no dead segment was reused")
		}
		if err := a.StoreLogs(fixed(i, i)); err != nil {
			t.Fatal(err)
		}
		a.DeleteRange(1, i-1)
	}
	// Write a little more to the reused file, whose rest holds a's old records.
	lastA := i - 1
	const idx = 2
	if err := b.StoreLogs(fixed(1, idx)); err != nil {
		t.Fatal(err)
	}
	crash(w)
	w = open(t, dir)
	defer w.Close()
	a, b = logOf(t, w, "a"), logOf(t, w, "b")
	if f, l := bounds(t, a); f != lastA || l != lastA {
		t.Fatalf("a after replay: %d..%d, want %d..%d", f, l, lastA, lastA)
	}
	if f, l := bounds(t, b); f != 1 || l != idx {
		t.Fatalf("b after replay: %d..%d, want 1..%d", f, l, idx)
	}
	for i, want := range append(fixed(1, idx), fixed(lastA, lastA)...) {
		l, got := b, raft.Log{}
		if i == idx {
			l = a
		}
		if err := l.GetLog(want.Index, &got); err != nil || !bytes.Equal(got.Data, want.Data) {
			t.Fatalf("entry %d: %q %v", want.Index, got.Data, err)
		}
	}
}

// TestFirstFormatRefused: a directory holding a segment of the first format (crcs of
// the body alone, written only by development builds) is refused with a message that
// names the file and says what to do, rather than read or silently passed over.
func TestFirstFormatRefused(t *testing.T) {
	dir := t.TempDir()
	var v1 []byte
	for _, e := range entries(1, 2, 1) {
		v1 = appendEntry(v1, 0, "a", e)
	}
	if err := os.WriteFile(filepath.Join(dir, "wal-00000001.log"), v1, 0o644); err != nil {
		t.Fatal(err)
	}
	w, err := Open(dir)
	if err == nil {
		w.Close()
		t.Fatal("a first-format segment was opened")
	}
	for _, want := range []string{"wal-00000001.log", "first WAL format", "move " + dir + " aside"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if _, _, _, err := Check(dir); err == nil {
		t.Error("Check read a first-format segment")
	}
}

// crash stops w's writer and closes its files as a SIGKILL would leave them.
func crash(w *WAL) {
	w.writer.Close()
	w.mu.Lock()
	defer w.mu.Unlock()
	w.closeFiles()
}

// TestQuietGroupDoesNotPinSegments: a partition that wrote a little and went quiet
// keeps its entries while a busy one writes and truncates many segments' worth; the
// old segments go away all the same, and replay finds both logs.
func TestQuietGroupDoesNotPinSegments(t *testing.T) {
	smallSegments(t, 500)
	dir := t.TempDir()
	w := open(t, dir)
	quiet, busy := logOf(t, w, "quiet"), logOf(t, w, "busy")
	if err := quiet.StoreLogs(entries(1, 3, 1)); err != nil {
		t.Fatal(err)
	}
	for i := uint64(1); i <= 300; i++ {
		if err := busy.StoreLogs(entries(i, i, 1)); err != nil {
			t.Fatal(err)
		}
		if i%10 == 0 {
			busy.DeleteRange(1, i-5)
		}
	}
	if n := w.Segments(); n <= 5 {
		t.Fatalf("only %d segments: the quiet group was copied before it was quiet for %v", n, quietFor)
	}
	w.mu.Lock()
	w.groups["quiet"].written = time.Now().Add(-quietFor) // as if quietFor had passed
	w.mu.Unlock()
	busy.StoreLogs(entries(301, 301, 1)) // the next writes copy it forward and collect
	busy.DeleteRange(1, 296)
	if n := w.Segments(); n > 3 {
		t.Fatalf("%d segments: the quiet group pins them", n)
	}
	check := func(w *WAL) {
		q, b := logOf(t, w, "quiet"), logOf(t, w, "busy")
		if f, l := bounds(t, q); f != 1 || l != 3 {
			t.Fatalf("quiet: %d..%d", f, l)
		}
		for i := uint64(1); i <= 3; i++ {
			checkEntry(t, q, i, 1)
		}
		if f, l := bounds(t, b); f != 297 || l != 301 {
			t.Fatalf("busy: %d..%d", f, l)
		}
	}
	check(w)
	w.Close()
	w = open(t, dir)
	defer w.Close()
	check(w)
}

// TestGrowingSegmentReplaced: a new WAL's first segment grows with every append, so
// appends move to a preallocated segment once one is ready; a crash there (its file is
// zeros after the last record) loses no entry, and reopening keeps it preallocated.
func TestGrowingSegmentReplaced(t *testing.T) {
	smallSegments(t, 1<<20)
	dir := t.TempDir()
	w := open(t, dir)
	l := logOf(t, w, "g")
	if err := l.StoreLogs(entries(1, 1, 1)); err != nil {
		t.Fatal(err)
	}
	preallocated := func(w *WAL) bool {
		w.mu.RLock()
		defer w.mu.RUnlock()
		s := w.segs[len(w.segs)-1]
		return s.alloc >= w.segBytes && s.size < s.alloc
	}
	deadline := time.Now().Add(time.Minute)
	for i := uint64(2); !preallocated(w); i++ {
		if time.Now().After(deadline) {
			t.Fatal("appends never moved to a preallocated segment")
		}
		if err := l.StoreLogs(entries(i, i, 1)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Millisecond)
	}
	_, last := bounds(t, l)
	if err := l.StoreLogs(entries(last+1, last+5, 1)); err != nil {
		t.Fatal(err)
	}
	last += 5
	crash(w)
	w = open(t, dir)
	l = logOf(t, w, "g")
	if f, got := bounds(t, l); f != 1 || got != last {
		t.Fatalf("after the crash: %d..%d, want 1..%d", f, got, last)
	}
	for i := uint64(1); i <= last; i++ {
		checkEntry(t, l, i, 1)
	}
	if !preallocated(w) {
		t.Fatal("the reopened active segment is no longer preallocated")
	}
	if err := l.StoreLogs(entries(last+1, last+1, 2)); err != nil {
		t.Fatal(err)
	}
	w.Close()
	w = open(t, dir)
	defer w.Close()
	l = logOf(t, w, "g")
	checkEntry(t, l, last, 1)
	checkEntry(t, l, last+1, 2)
}

// TestRotatedSegmentsReused: segments rotate before their last bytes are written
// (the next batch does not fit), and once dead they are still reused rather than
// deleted and zero-filled anew, so a log that stays small keeps cycling through a
// few files however much goes through it.
func TestRotatedSegmentsReused(t *testing.T) {
	smallSegments(t, 1<<20)
	dir := t.TempDir()
	w := open(t, dir)
	l := logOf(t, w, "g")
	body := bytes.Repeat([]byte("m"), 10_000) // does not divide a segment evenly
	var last uint64
	for last = 1; last <= 1000; last++ { // about ten segments' worth
		if err := l.StoreLogs([]*raft.Log{{Index: last, Term: 1, Type: raft.LogCommand, Data: body}}); err != nil {
			t.Fatal(err)
		}
		if last > 10 {
			if err := l.DeleteRange(1, last-10); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(100 * time.Microsecond) // lets a zero-fill finish before it is needed
	}
	last--
	// The first segment grows (nothing is prepared yet); it and the one or two after
	// it are replaced by zero-filled files, and from then on dead ones come back.
	if n := w.zeroFills.Load(); n > 3 {
		t.Fatalf("%d segments were zero-filled for a log that never outgrew one", n)
	}
	w.Close()
	w = open(t, dir)
	defer w.Close()
	l = logOf(t, w, "g")
	if f, got := bounds(t, l); f != last-9 || got != last {
		t.Fatalf("after reopening: %d..%d, want %d..%d", f, got, last-9, last)
	}
	var e raft.Log
	if err := l.GetLog(last, &e); err != nil || !bytes.Equal(e.Data, body) {
		t.Fatalf("GetLog(%d): %d bytes, %v", last, len(e.Data), err)
	}
}

// TestGroupsShareSyncs: 64 partitions appending at once need fewer syncs than appends.
func TestGroupsShareSyncs(t *testing.T) {
	w := open(t, t.TempDir())
	defer w.Close()
	const groups, appends = 64, 20
	var wg sync.WaitGroup
	for g := range groups {
		l := logOf(t, w, fmt.Sprintf("p/t/%d", g))
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := uint64(1); i <= appends; i++ {
				if err := l.StoreLog(&raft.Log{Index: i, Data: bytes.Repeat([]byte{1}, 1024)}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	syncs, writes := w.Stats()
	t.Logf("%d appends, %d syncs", writes, syncs)
	if syncs >= writes {
		t.Fatalf("no sharing: %d appends took %d syncs", writes, syncs)
	}
	for g := range groups {
		if _, l := bounds(t, logOf(t, w, fmt.Sprintf("p/t/%d", g))); l != appends {
			t.Fatalf("group %d: last %d", g, l)
		}
	}
}

// TestReadBack: entries read right after their append (from the recent batches kept
// in memory) and long after (from the file) are the ones written.
func TestReadBack(t *testing.T) {
	w := open(t, t.TempDir())
	defer w.Close()
	l := logOf(t, w, "g")
	const n = 40 // 40 MiB: more than recentBytes
	data := func(i uint64) []byte { return bytes.Repeat([]byte{byte(i)}, 1<<20) }
	for i := uint64(1); i <= n; i++ {
		if err := l.StoreLog(&raft.Log{Index: i, Term: 1, Data: data(i)}); err != nil {
			t.Fatal(err)
		}
		var e raft.Log
		if err := l.GetLog(i, &e); err != nil || !bytes.Equal(e.Data, data(i)) {
			t.Fatalf("entry %d right after its append: %v", i, err)
		}
		e.Data = append(e.Data, 0xee) // must not change what is stored after it
	}
	for i := uint64(1); i <= n; i++ {
		var e raft.Log
		if err := l.GetLog(i, &e); err != nil || e.Index != i || !bytes.Equal(e.Data, data(i)) {
			t.Fatalf("entry %d: %v", i, err)
		}
	}
}

// BenchmarkAppend64Partitions: durable 1 KiB appends from 64 busy partitions, each
// waiting for its sync as raft does.
func BenchmarkAppend64Partitions(b *testing.B) {
	w := open(b, b.TempDir())
	defer w.Close()
	const groups = 64
	logs := make([]*Log, groups)
	for g := range logs {
		logs[g] = logOf(b, w, fmt.Sprintf("p/t/%d", g))
	}
	s0, w0 := w.Stats()
	b.SetBytes(1024)
	b.ResetTimer()
	var wg sync.WaitGroup
	per := b.N/groups + 1
	for g := range groups {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range per {
				if err := logs[g].StoreLog(&raft.Log{Index: uint64(i + 1), Data: make([]byte, 1024)}); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	s, wr := w.Stats()
	b.ReportMetric(float64(wr-w0)/float64(s-s0), "appends/sync")
	b.ReportMetric(float64(groups*per)/b.Elapsed().Seconds(), "appends/s")
}
