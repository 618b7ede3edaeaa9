package store

import (
	"bytes"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/quorumq/quorumq/broker/partition"
	"github.com/quorumq/quorumq/internal/devtools/testkit"
)

// produceAt applies one stamped produce entry of n messages of size bytes each.
func produceAt(t *testing.T, f *partition.FSM, index uint64, n, size int, at time.Time) {
	t.Helper()
	msgs := make([][]byte, n)
	for i := range msgs {
		msgs[i] = bytes.Repeat([]byte{byte('a' + index%26)}, size)
	}
	apply(t, f, index, partition.StampProduce(partition.EncodeProduce([]partition.Batch{{Msgs: msgs}}), at))
}

// Two partitions interleave their runs in one data log segment; retention on one
// deletes its prefix (a run cut in the middle), frees the disk blocks its bodies took,
// keeps every later message readable, and survives a reopen and a snapshot stream.
func TestRetentionDeletesPrefixAndFreesDisk(t *testing.T) {
	dir := t.TempDir()
	db := openDB(t, dir)
	ga, gb := group(t, db, "p/a/0"), group(t, db, "p/b/0")
	fa, err := partition.New(ga.Partition())
	if err != nil {
		t.Fatal(err)
	}
	fb, _ := partition.New(gb.Partition())
	t0 := time.UnixMilli(1_000_000_000)
	const size = 64 << 10
	for i := range 40 {
		produceAt(t, fa, uint64(i+1), 4, size, t0.Add(time.Duration(i)*time.Second))
		produceAt(t, fb, uint64(i+1), 1, 100, t0)
		if _, err := fa.Messages(uint64(4*i), 1); err != nil { // commit each: one run per entry
			t.Fatal(err)
		}
	}
	fb.Messages(0, 1)
	before := testkit.DiskUse(t, filepath.Join(dir, "data"))

	p := ga.Partition()
	start, next := fa.Bounds()
	_, _, kept, _ := fa.Info()
	// By time: entries 0..29 were proposed at least a second before t0+30s.
	cut, err := p.Cutoff(start, next, kept, t0.Add(30*time.Second).UnixMilli(), 0)
	if err != nil || cut != 4*30 {
		t.Fatalf("cutoff by time = %d, %v; want %d", cut, err, 4*30)
	}
	// By size: keep the newest 10 messages.
	if cut, _ = p.Cutoff(start, next, kept, 0, 10*size); cut != next-10 {
		t.Fatalf("cutoff by size = %d; want %d", cut, next-10)
	}
	out := apply(t, fa, 41, partition.EncodeTruncate(partition.Truncate{Before: 150, At: t0.UnixMilli()}))
	if r, err := partition.DecodeTruncateResult(out); err != nil || r.Start != 150 {
		t.Fatalf("truncate: %+v %v", r, err)
	}
	if _, err := fa.Messages(149, 1); !errors.As(err, new(*partition.GoneError)) {
		t.Fatalf("read below start: %v", err)
	}
	got, err := fa.Messages(150, 10)
	if err != nil || len(got) != 10 || got[0][0] != byte('a'+38%26) {
		t.Fatalf("read from start: %d messages, %v", len(got), err)
	}
	after := testkit.DiskUse(t, filepath.Join(dir, "data"))
	if freed := before - after; freed < 140*size {
		t.Fatalf("truncating 150 messages of %d bytes freed %d bytes on disk (%d → %d)", size, freed, before, after)
	}
	if m, err := fb.Messages(0, 40); err != nil || len(m) != 40 {
		t.Fatalf("other partition: %d messages, %v", len(m), err)
	}
	if _, _, kept, _ := fa.Info(); kept != 10*size {
		t.Fatalf("bytes kept = %d, want %d", kept, 10*size)
	}

	// A snapshot streams [start, next) and a fresh replica takes it.
	snaps := ga.SnapshotStore()
	snap, _ := fa.Snapshot()
	sink, _ := snaps.Create(1, 41, 1, raft.Configuration{}, 0, nil)
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}
	meta, rc, err := snaps.Open(sink.ID())
	if err != nil {
		t.Fatal(err)
	}
	gc := group(t, db, "p/c/0")
	fc, _ := partition.New(gc.Partition())
	csink, _ := gc.SnapshotStore().Create(1, 41, 1, raft.Configuration{}, 0, nil)
	n, err := copyAll(csink, rc)
	if err != nil || n != meta.Size {
		t.Fatalf("snapshot stream: %d bytes of %d, %v", n, meta.Size, err)
	}
	csink.Close()
	_, crc, _ := gc.SnapshotStore().Open(csink.ID())
	if err := fc.Restore(crc); err != nil {
		t.Fatal(err)
	}
	if s, nx := fc.Bounds(); s != 150 || nx != 160 {
		t.Fatalf("restored bounds [%d, %d)", s, nx)
	}
	if m, err := fc.Messages(150, 10); err != nil || !bytes.Equal(m[9], got[9]) {
		t.Fatalf("restored messages: %v", err)
	}

	db.Close()
	db = openDB(t, dir)
	defer db.Close()
	fa, _ = partition.New(group(t, db, "p/a/0").Partition())
	if s, nx := fa.Bounds(); s != 150 || nx != 160 {
		t.Fatalf("after reopen: bounds [%d, %d)", s, nx)
	}
	// Every message deleted, then more produced: they follow on.
	apply(t, fa, 42, partition.EncodeTruncate(partition.Truncate{Before: 1000}))
	produceAt(t, fa, 43, 2, 10, t0)
	if m, err := fa.Messages(160, 2); err != nil || len(m) != 2 {
		t.Fatalf("after truncating everything: %v", err)
	}
}

func copyAll(sink interface{ Write([]byte) (int, error) }, rc interface{ Read([]byte) (int, error) }) (int64, error) {
	buf := make([]byte, 32<<10)
	var n int64
	for {
		k, err := rc.Read(buf)
		if k > 0 {
			if _, werr := sink.Write(buf[:k]); werr != nil {
				return n, werr
			}
			n += int64(k)
		}
		if err != nil {
			if err.Error() == "EOF" {
				return n, nil
			}
			return n, err
		}
	}
}
