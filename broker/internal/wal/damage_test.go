package wal

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// noWatermarks keeps the background writer from writing the watermark during a test
// (a test writes it itself with saveWatermark where it wants one).
func noWatermarks(t testing.TB) {
	old := watermarkEvery
	watermarkEvery = time.Hour
	t.Cleanup(func() { watermarkEvery = old })
}

// recordAt returns the offset of the record holding entry idx of group in w.
func recordAt(t testing.TB, w *WAL, group string, idx uint64) (path string, off, n int64) {
	t.Helper()
	w.mu.RLock()
	defer w.mu.RUnlock()
	g := w.groups[group]
	l := g.locs[idx-g.first]
	return w.segment(l.seg).path, int64(l.off), int64(l.len)
}

// TestDamageClassified: two groups, a and b, append interleaved; then the files are
// damaged as a crash would (silently cut) or as a bad disk would (the group reports
// Damage, keeps a contiguous prefix, the other group is untouched).
func TestDamageClassified(t *testing.T) {
	cases := []struct {
		name string
		// damage damages the closed WAL in dir; end is where a's entry 20 ends.
		damage      func(t *testing.T, w *WAL) func()
		watermark   bool
		aDamaged    bool
		aLast       uint64
		bDamaged    bool
		bLast       uint64
		lastSegment bool
	}{
		{name: "torn tail past the watermark", damage: func(t *testing.T, w *WAL) func() {
			p, off, n := recordAt(t, w, "a", 20)
			return func() { truncate(t, p, off+n/2) }
		}, aLast: 19, bLast: 19},
		{name: "cut below the watermark", watermark: true, damage: func(t *testing.T, w *WAL) func() {
			p, off, _ := recordAt(t, w, "a", 15)
			return func() { truncate(t, p, off) }
		}, aDamaged: true, aLast: 14, bDamaged: true, bLast: 14},
		{name: "bit flip in a middle record", damage: func(t *testing.T, w *WAL) func() {
			p, off, n := recordAt(t, w, "a", 10)
			return func() { flip(t, p, off+n-2) }
		}, aDamaged: true, aLast: 9, bLast: 20},
		{name: "bit flip in a middle record's length", damage: func(t *testing.T, w *WAL) func() {
			p, off, _ := recordAt(t, w, "a", 10)
			return func() { flip(t, p, off+6) }
		}, aDamaged: true, aLast: 9, bDamaged: true, bLast: 20},
		{name: "bit flip under the watermark, group unknown", watermark: true, damage: func(t *testing.T, w *WAL) func() {
			p, off, _ := recordAt(t, w, "a", 10)
			return func() { flip(t, p, off+6) }
		}, aDamaged: true, aLast: 9, bLast: 20},
		{name: "zeros over the end of records below the watermark", watermark: true, damage: func(t *testing.T, w *WAL) func() {
			p, off, _ := recordAt(t, w, "b", 18)
			return func() { writeAt(t, p, off, make([]byte, 4096)) }
		}, aDamaged: true, aLast: 18, bDamaged: true, bLast: 17},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			noWatermarks(t)
			dir := t.TempDir()
			w := open(t, dir)
			waitPrepared(t, w) // all records in one preallocated segment
			a, b := logOf(t, w, "a"), logOf(t, w, "b")
			for i := uint64(1); i <= 20; i++ {
				if err := a.StoreLogs(entries(i, i, 1)); err != nil {
					t.Fatal(err)
				}
				if err := b.StoreLogs(entries(i, i, 1)); err != nil {
					t.Fatal(err)
				}
			}
			if c.watermark {
				if err := w.saveWatermark(); err != nil {
					t.Fatal(err)
				}
			}
			do := c.damage(t, w)
			crash(w)
			do()

			w = open(t, dir)
			a, b = logOf(t, w, "a"), logOf(t, w, "b")
			for _, g := range []struct {
				l       *Log
				damaged bool
				last    uint64
			}{{a, c.aDamaged, c.aLast}, {b, c.bDamaged, c.bLast}} {
				if _, last := bounds(t, g.l); last != g.last {
					t.Errorf("%s: last %d, want %d", g.l.group, last, g.last)
				}
				if err := g.l.Damage(); (err != nil) != g.damaged {
					t.Errorf("%s: Damage() = %v, want damaged %v", g.l.group, err, g.damaged)
				}
				_, last := bounds(t, g.l)
				for i := uint64(1); i <= last; i++ {
					checkEntry(t, g.l, i, 1)
				}
			}
			// Damage is remembered across restarts until the group has caught up.
			w.Close()
			w = open(t, dir)
			defer w.Close()
			a = logOf(t, w, "a")
			if err := a.Damage(); (err != nil) != c.aDamaged {
				t.Fatalf("after a restart: a.Damage() = %v", err)
			}
			_, last := bounds(t, a)
			if err := a.StoreLogs(entries(last+1, 20, 2)); err != nil {
				t.Fatal(err)
			}
			if err := a.Damage(); err != nil {
				t.Fatalf("caught up, still %v", err)
			}
		})
	}
}

// TestDamageInOlderSegment: damage in a segment before the newest one is never a torn
// tail; the group whose record it was stops at the damage.
func TestDamageInOlderSegment(t *testing.T) {
	noWatermarks(t)
	smallSegments(t, 2000)
	dir := t.TempDir()
	w := open(t, dir)
	a, b := logOf(t, w, "a"), logOf(t, w, "b")
	for i := uint64(1); i <= 100; i++ {
		a.StoreLogs(entries(i, i, 1))
		b.StoreLogs(entries(i, i, 1))
	}
	p, off, n := recordAt(t, w, "a", 5)
	if p == lastPath(w) {
		t.Fatal("entry 5 is in the newest segment")
	}
	w.Close()
	flip(t, p, off+n-1)
	w = open(t, dir)
	defer w.Close()
	a, b = logOf(t, w, "a"), logOf(t, w, "b")
	if _, last := bounds(t, a); last != 4 || a.Damage() == nil {
		t.Fatalf("a: last %d, damage %v", last, a.Damage())
	}
	if _, last := bounds(t, b); last != 100 || b.Damage() != nil {
		t.Fatalf("b: last %d, damage %v", last, b.Damage())
	}
}

// waitPrepared waits until the next segment is ready, so that the first append starts it.
func waitPrepared(t testing.TB, w *WAL) {
	deadline := time.Now().Add(time.Minute)
	for !w.prepared() {
		if time.Now().After(deadline) {
			t.Fatal("no segment prepared")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func lastPath(w *WAL) string {
	p, _ := lastRecords(w)
	return p
}

// TestGetLogChecksDisk: an entry read back from its segment (not from the batches kept
// in memory) is checked: a flipped bit is reported and never returned.
func TestGetLogChecksDisk(t *testing.T) {
	noWatermarks(t)
	dir := t.TempDir()
	w := open(t, dir)
	defer w.Close()
	var reported []string
	w.OnDamage(func(group string, err error) { reported = append(reported, group) })
	a := logOf(t, w, "a")
	a.StoreLogs(entries(1, 3, 1))
	w.mu.Lock()
	w.recent, w.recentBytes = nil, 0 // read from the file
	w.mu.Unlock()
	p, off, n := recordAt(t, w, "a", 2)
	flip(t, p, off+n-1)
	checkEntry(t, a, 1, 1)
	if err := a.GetLog(2, new(raft.Log)); err == nil || len(reported) != 1 || reported[0] != "a" {
		t.Fatalf("GetLog of a damaged record: %v, reported %v", err, reported)
	}
	// The scrubber's pass finds it too, reading past the batches kept in memory.
	reported = nil
	if n := w.Verify(func(int) bool { return true }); n != 3 || len(reported) != 1 {
		t.Fatalf("Verify checked %d records, reported %v", n, reported)
	}
}

// TestWatermarkEncoding: a watermark decodes to what was encoded; any change is refused.
func TestWatermarkEncoding(t *testing.T) {
	m := &watermark{seq: 5, seg: 7, off: 1234, groups: map[string]wmGroup{"p/a/0": {1, 9, 0}, "p/b/1": {3, 4, 12}}}
	enc := m.encode(nil)
	got, err := decodeWatermark(enc)
	if err != nil || got.seq != 5 || got.seg != 7 || got.off != 1234 || len(got.groups) != 2 || got.groups["p/b/1"] != (wmGroup{3, 4, 12}) {
		t.Fatalf("decoded %+v, %v", got, err)
	}
	for i := range enc {
		bad := append([]byte(nil), enc...)
		bad[i] ^= 1
		if _, err := decodeWatermark(bad); err == nil {
			t.Fatalf("a flip at byte %d was accepted", i)
		}
	}
	// Left over from a longer watermark before: ignored.
	if _, err := decodeWatermark(append(append([]byte(nil), enc...), 1, 2, 3)); err != nil {
		t.Fatal(err)
	}
}

// FuzzReplay: replaying any bytes as a segment never panics, and every entry it
// indexes is a whole record that checks out, inside the good prefix it reports.
func FuzzReplay(f *testing.F) {
	seed := segSeed(1)
	var good []byte
	for i, e := range entries(1, 4, 1) {
		good = appendEntry(good, seed, []string{"a", "b"}[i%2], e)
	}
	good = appendRecord(good, seed, kindCompact, "a", []byte{0, 0, 0, 0, 0, 0, 0, 1})
	f.Add(good)
	f.Add(good[:len(good)-5])
	flipped := append([]byte(nil), good...)
	flipped[len(good)/2] ^= 1
	f.Add(flipped)
	f.Add(append(append([]byte(nil), good...), make([]byte, 64)...))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		w := newWAL(t.TempDir())
		s := &segment{id: 1, seed: seed}
		w.segs = []*segment{s}
		end := w.replaySegment(&replayState{}, s, data, true)
		if end < 0 || end > len(data) {
			t.Fatalf("good prefix %d of %d bytes", end, len(data))
		}
		for name, g := range w.groups {
			for i, l := range g.locs {
				n, ok := validAt(data[:end], int(l.off), seed)
				if !ok || uint32(n) != l.len {
					t.Fatalf("%s entry %d: record at %d is not one", name, g.first+uint64(i), l.off)
				}
			}
		}
	})
}

// TestWatermarkSlots: the watermark alternates between two files; a torn newer one
// leaves the older one in force.
func TestWatermarkSlots(t *testing.T) {
	noWatermarks(t)
	dir := t.TempDir()
	w := open(t, dir)
	defer w.Close()
	a := logOf(t, w, "a")
	a.StoreLogs(entries(1, 3, 1))
	w.saveWatermark()
	a.StoreLogs(entries(4, 5, 1))
	w.saveWatermark()
	m, _ := loadWatermark(dir)
	if m == nil || m.groups["a"].last != 5 {
		t.Fatalf("newest watermark: %+v", m)
	}
	flip(t, filepath.Join(dir, watermarkNames[m.seq%2]), 10)
	if m, _ = loadWatermark(dir); m == nil || m.groups["a"].last != 3 {
		t.Fatalf("after the newer one was torn: %+v", m)
	}
}

// TestSegmentsGone: a WAL whose segment files are all gone, while its watermark says
// what it had, reports every group with entries as damaged.
func TestSegmentsGone(t *testing.T) {
	noWatermarks(t)
	dir := t.TempDir()
	w := open(t, dir)
	logOf(t, w, "a").StoreLogs(entries(1, 3, 1))
	w.Close()
	names, _ := filepath.Glob(filepath.Join(dir, "wal-*.seg"))
	for _, n := range names {
		os.Remove(n)
	}
	w = open(t, dir)
	defer w.Close()
	if err := logOf(t, w, "a").Damage(); err == nil {
		t.Fatal("a lost all its entries and is not damaged")
	}
}
