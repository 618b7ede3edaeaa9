package store

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"
)

func msgs(from, n, size int) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		m := fmt.Sprintf("m%d.", from+i)
		out[i] = []byte(m + strings.Repeat("x", max(size-len(m), 0)))
	}
	return out
}

func put(g *Group, first int, ms [][]byte) error {
	return g.updateData(func(root *bolt.Bucket) error { return putMessages(g.db.data.dlog, root, uint64(first), ms) })
}

// checkRead reads every suffix the test cares about and checks each message.
func checkRead(t *testing.T, g *Group, total int) {
	t.Helper()
	for _, from := range []int{0, 1, total / 2, total - 1} {
		if from < 0 || from >= total {
			continue
		}
		for _, n := range []int{1, total - from} {
			got, err := g.Partition().Messages(uint64(from), uint32(n))
			if err != nil {
				t.Fatalf("from %d, %d messages: %v", from, n, err)
			}
			for i, m := range got {
				if !bytes.HasPrefix(m, []byte(fmt.Sprintf("m%d.", from+i))) {
					t.Fatalf("from %d: message %d = %.20q", from, from+i, m)
				}
			}
		}
	}
	if _, err := g.Partition().Messages(0, uint32(total+1)); err == nil {
		t.Fatal("reading past the end: no error")
	}
}

func TestRuns(t *testing.T) {
	type write struct {
		first, n, size int
	}
	cases := []struct {
		name   string
		writes []write
		total  int
		runs   int // index entries afterwards
	}{
		{"one message", []write{{first: 0, n: 1, size: 10}}, 1, 1},
		{"several writes", []write{{first: 0, n: 3, size: 10}, {first: 3, n: 1, size: 10}, {first: 4, n: 5, size: 10}}, 9, 3},
		{"split at the run limit", []write{{first: 0, n: runMsgs + 10, size: 1}}, runMsgs + 10, 2},
		{"empty messages", []write{{first: 0, n: 5, size: 0}, {first: 5, n: 2, size: 3}}, 7, 2},
		{"resent prefix skipped", []write{{first: 0, n: 10, size: 10}, {first: 0, n: 15, size: 10}}, 15, 2},
		{"resent entirely", []write{{first: 0, n: 10, size: 10}, {first: 4, n: 3, size: 10}}, 10, 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			db := openDB(t, t.TempDir())
			defer db.Close()
			g := group(t, db, "p/t/0")
			for _, w := range tc.writes {
				if err := put(g, w.first, msgs(w.first, w.n, w.size)); err != nil {
					t.Fatal(err)
				}
			}
			checkRead(t, g, tc.total)
			n := 0
			if err := g.viewData(func(root *bolt.Bucket) error { n = root.Bucket(bIdx).Stats().KeyN; return nil }); err != nil {
				t.Fatal(err)
			}
			if n != tc.runs {
				t.Fatalf("%d runs, want %d", n, tc.runs)
			}
		})
	}
}

// TestFirstFormatRefused: a data.db in which a partition keeps its messages in the
// first format (a bolt value each, written only by development builds) is refused at
// open with a message naming the partition and what to do, not read as empty.
func TestFirstFormatRefused(t *testing.T) {
	dir := t.TempDir()
	db := openDB(t, dir)
	g := group(t, db, "p/t/0")
	if err := g.updateData(func(root *bolt.Bucket) error {
		b, err := root.CreateBucket(bMsg)
		if err != nil {
			return err
		}
		return b.Put(u64key(0), []byte("m0"))
	}); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db, err := Open(dir)
	if err == nil {
		db.Close()
		t.Fatal("a data.db of the first format was opened")
	}
	for _, want := range []string{"p/t/0", "first format of data.db", "move the broker's data directory aside"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
}

func TestGapRefused(t *testing.T) {
	db := openDB(t, t.TempDir())
	defer db.Close()
	g := group(t, db, "p/t/0")
	if err := put(g, 0, msgs(0, 3, 5)); err != nil {
		t.Fatal(err)
	}
	if err := put(g, 4, msgs(4, 1, 5)); err == nil {
		t.Fatal("a write leaving a gap was accepted")
	}
	checkRead(t, g, 3)
}

func TestFit(t *testing.T) {
	db := openDB(t, t.TempDir())
	defer db.Close()
	g := group(t, db, "p/t/0")
	if err := put(g, 0, msgs(0, 4, 100)); err != nil {
		t.Fatal(err)
	}
	if err := put(g, 4, msgs(4, 8, 100)); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		from, to, maxBytes uint64
		n, size            uint64
		fails              bool
	}{
		{0, 12, 1 << 20, 12, 1200, false},
		{2, 6, 1 << 20, 4, 400, false}, // across two runs
		{3, 12, 250, 2, 200, false},    // bounded by bytes
		{5, 12, 10, 1, 100, false},     // always at least one
		{10, 13, 1 << 20, 0, 0, true},  // past the end
		{12, 12, 1 << 20, 0, 0, false}, // nothing asked
	}
	for _, tc := range cases {
		n, size, err := g.Partition().Fit(tc.from, tc.to, tc.maxBytes)
		if (err != nil) != tc.fails || err == nil && (n != tc.n || size != tc.size) {
			t.Errorf("Fit(%d, %d, %d) = %d, %d, %v; want %d, %d, fails=%v", tc.from, tc.to, tc.maxBytes, n, size, err, tc.n, tc.size, tc.fails)
		}
	}
}

func TestCorruptIndex(t *testing.T) {
	bad := [][]byte{
		{},
		make([]byte, 16), // no messages
		append(make([]byte, 12), 0, 0, 0, 2, 0, 0, 0, 1),             // count 2, one end
		append(make([]byte, 12), 0, 0, 0, 2, 0, 0, 0, 9, 0, 0, 0, 1), // ends going back
	}
	for _, v := range bad {
		if _, err := parseRun(u64key(0), v); err == nil {
			t.Errorf("parseRun(%v) accepted", v)
		}
	}
	db := openDB(t, t.TempDir())
	defer db.Close()
	g := group(t, db, "p/t/0")
	if err := g.updateData(func(root *bolt.Bucket) error {
		if err := putState(root, nil, nil, 1, 2, 0, 0); err != nil {
			return err
		}
		return root.Bucket(bIdx).Put(u64key(0), bad[2])
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := g.Partition().Messages(0, 1); !errors.As(err, new(*IndexError)) || !strings.Contains(err.Error(), "index of messages 0 to 1") {
		t.Fatalf("corrupt index read: %v", err)
	}
}

// A commit that wrote its bodies but crashed before bolt committed leaves bytes past
// the recorded end: they are written over, never read.
func TestDataLogTailAfterCrash(t *testing.T) {
	dir := t.TempDir()
	db := openDB(t, dir)
	g := group(t, db, "p/t/0")
	if err := put(g, 0, msgs(0, 5, 100)); err != nil {
		t.Fatal(err)
	}
	end := db.data.dlog.end
	db.Close()
	f, err := os.OpenFile(filepath.Join(dir, "data", segName(end.seg)), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(bytes.Repeat([]byte("garbage"), 100), int64(end.off)); err != nil {
		t.Fatal(err)
	}
	f.Close()

	db = openDB(t, dir)
	defer db.Close()
	g = group(t, db, "p/t/0")
	if err := put(g, 5, msgs(5, 5, 100)); err != nil {
		t.Fatal(err)
	}
	checkRead(t, g, 10)
}

func segments(t *testing.T, dir string) []uint32 {
	t.Helper()
	es, err := os.ReadDir(filepath.Join(dir, "data"))
	if err != nil {
		t.Fatal(err)
	}
	var out []uint32
	for _, e := range es {
		if seg, ok := parseSegName(e.Name()); ok {
			out = append(out, seg)
		}
	}
	slices.Sort(out)
	return out
}

// Segments rotate when full and are deleted once no group's runs point into them,
// also when the deletion is only noticed at the next open.
func TestDataSegmentsDeleted(t *testing.T) {
	defer func(n uint64) { dataSegmentBytes = n }(dataSegmentBytes)
	dataSegmentBytes = 1000
	dir := t.TempDir()
	db := openDB(t, dir)
	a, b := group(t, db, "p/t/a"), group(t, db, "p/t/b")
	for i := range 4 { // each write fills a segment: a in 0 and 2, b in 1 and 3
		g := []*Group{a, b}[i%2]
		if err := put(g, i/2*10, msgs(i/2*10, 10, 100)); err != nil {
			t.Fatal(err)
		}
	}
	if got := segments(t, dir); !slices.Equal(got, []uint32{0, 1, 2, 3}) {
		t.Fatalf("segments %v", got)
	}
	if err := db.DeleteGroup("p/t/a"); err != nil {
		t.Fatal(err)
	}
	if got := segments(t, dir); !slices.Equal(got, []uint32{1, 3}) {
		t.Fatalf("after deleting a: segments %v", got)
	}
	checkRead(t, b, 20)
	if err := db.DeleteGroup("p/t/b"); err != nil {
		t.Fatal(err)
	}
	if got := segments(t, dir); !slices.Equal(got, []uint32{3}) {
		t.Fatalf("after deleting b: segments %v (the active one stays)", got)
	}
	db.Close()
	// A segment left behind (a crash between the commit and the file's removal).
	if err := os.WriteFile(filepath.Join(dir, "data", segName(2)), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	db = openDB(t, dir)
	defer db.Close()
	if got := segments(t, dir); !slices.Equal(got, []uint32{3}) {
		t.Fatalf("after reopening: segments %v", got)
	}
	c := group(t, db, "p/t/c")
	if err := put(c, 0, msgs(0, 3, 10)); err != nil {
		t.Fatal(err)
	}
	checkRead(t, c, 3)
	// Segment 3 was full: c's write started segment 4, and nothing points into 3.
	if got := segments(t, dir); !slices.Equal(got, []uint32{4}) {
		t.Fatalf("after moving on from an unused segment: segments %v", got)
	}
}

// BenchmarkCommit measures the store's side of a busy broker: each commit carries a
// batch of 100 messages of 1 KiB for each of 64 partitions (fsyncs included).
func BenchmarkCommit(b *testing.B) {
	db := openDB(b, b.TempDir())
	defer db.Close()
	groups := make([]*Group, 64)
	for i := range groups {
		groups[i] = group(b, db, fmt.Sprintf("p/t/%d", i))
	}
	batch := msgs(0, 100, 1024)
	next := make([]uint64, len(groups))
	b.SetBytes(int64(100 * 1024 * len(groups)))
	for range b.N {
		reqs := make([]*writeReq, len(groups))
		for i, g := range groups {
			first := next[i]
			reqs[i] = &writeReq{fn: func(tx *bolt.Tx) error { return putMessages(db.data.dlog, tx.Bucket(g.name), first, batch) }}
			next[i] += uint64(len(batch))
		}
		if err := db.data.run(reqs); err != nil {
			b.Fatal(err)
		}
	}
}

func TestPrefetchLen(t *testing.T) {
	end := dataPos{seg: 2, off: 1000}
	for _, tc := range []struct {
		at   dataPos
		n    uint64
		want uint64
	}{
		{dataPos{1, 500}, 4096, 4096}, // an older segment is written in full
		{dataPos{2, 0}, 4096, 1000},   // the active one up to its durable end
		{dataPos{2, 600}, 100, 100},
		{dataPos{2, 1000}, 4096, 0}, // nothing past the end
		{dataPos{3, 0}, 4096, 0},
	} {
		if got := prefetchLen(tc.at, end, tc.n); got != tc.want {
			t.Errorf("prefetchLen(%v, %v, %d) = %d, want %d", tc.at, end, tc.n, got, tc.want)
		}
	}
}
