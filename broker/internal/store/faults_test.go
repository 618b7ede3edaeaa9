package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/quorumq/quorumq/broker/partition"
	bolt "go.etcd.io/bbolt"
)

// faultLog collects what OnFault reports.
type faultLog struct {
	mu     sync.Mutex
	faults []Fault
}

func (l *faultLog) add(f Fault) { l.mu.Lock(); l.faults = append(l.faults, f); l.mu.Unlock() }

func (l *faultLog) count() int { l.mu.Lock(); defer l.mu.Unlock(); return len(l.faults) }

// bodyPos returns where message off's body is in the data log.
func bodyPos(t *testing.T, g *Group, off uint64) (string, int64) {
	t.Helper()
	var at dataPos
	if err := g.viewData(func(root *bolt.Bucket) error {
		_, err := walk(root, off, func(r run, i int) (int, bool, error) {
			at = dataPos{r.at.seg, r.at.off + r.end(i-1)}
			return 1, false, nil
		})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return filepath.Join(g.db.data.dlog.dir, segName(at.seg)), int64(at.off)
}

func flipByte(t *testing.T, path string, at int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1)
	f.ReadAt(b, at)
	b[0] ^= 0x10
	if _, err := f.WriteAt(b, at); err != nil {
		t.Fatal(err)
	}
}

// TestDamagedBodies: a flipped body and a truncated segment are never served, are
// reported, and Repair puts the right bodies back (and refuses wrong ones).
func TestDamagedBodies(t *testing.T) {
	cases := []struct {
		name   string
		damage func(t *testing.T, dir string, g *Group)
		bad    []uint64
	}{
		{"bit flip", func(t *testing.T, dir string, g *Group) {
			p, at := bodyPos(t, g, 7)
			flipByte(t, p, at+3)
		}, []uint64{7}},
		{"truncated segment", func(t *testing.T, dir string, g *Group) {
			p, at := bodyPos(t, g, 17)
			if err := os.Truncate(p, at+10); err != nil {
				t.Fatal(err)
			}
		}, []uint64{17, 18, 19}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			db := openDB(t, dir)
			g := group(t, db, "p/t/0")
			want := msgs(0, 20, 100)
			if err := put(g, 0, want); err != nil {
				t.Fatal(err)
			}
			db.Close()
			db = openDB(t, dir)
			defer db.Close()
			g = group(t, db, "p/t/0")
			c.damage(t, dir, g)
			db.Close()
			db = openDB(t, dir)
			defer db.Close()
			var faults faultLog
			db.OnFault(faults.add)
			g = group(t, db, "p/t/0")
			for _, off := range c.bad {
				_, err := g.Partition().Messages(off, 1)
				var ce *CorruptError
				if !errors.As(err, &ce) || ce.Offset != off || ce.Group != "p/t/0" {
					t.Fatalf("message %d: %v", off, err)
				}
			}
			if _, err := g.Partition().Messages(0, 20); err == nil {
				t.Fatal("a read over a damaged body succeeded")
			}
			if faults.count() == 0 {
				t.Fatal("nothing reported")
			}
			wrong := append([]byte(nil), want[c.bad[0]]...)
			wrong[0] ^= 1
			if _, err := g.Partition().Repair(c.bad[0], [][]byte{wrong}); err == nil {
				t.Fatal("a wrong body was accepted as a repair")
			}
			n, err := g.Partition().Repair(c.bad[0], want[c.bad[0]:c.bad[len(c.bad)-1]+1])
			if err != nil || n != len(c.bad) {
				t.Fatalf("repaired %d of %d: %v", n, len(c.bad), err)
			}
			got, err := g.Partition().Messages(0, 20)
			if err != nil {
				t.Fatal(err)
			}
			for i := range got {
				if !bytes.Equal(got[i], want[i]) {
					t.Fatalf("message %d after repair: %.20q", i, got[i])
				}
			}
		})
	}
}

// TestOldRunsReadable: runs written before the checksums (no crcs) are still read.
func TestOldRunsReadable(t *testing.T) {
	db := openDB(t, t.TempDir())
	defer db.Close()
	g := group(t, db, "p/t/0")
	if err := put(g, 0, msgs(0, 5, 10)); err != nil {
		t.Fatal(err)
	}
	// Drop the crcs from the run, as the previous format stored it.
	if err := g.updateData(func(root *bolt.Bucket) error {
		k, v := root.Bucket(bIdx).Cursor().First()
		n := binary.BigEndian.Uint32(v[12:]) &^ sealedRun
		old := append([]byte(nil), v[:16+4*n]...)
		binary.BigEndian.PutUint32(old[12:], n)
		return root.Bucket(bIdx).Put(append([]byte(nil), k...), old)
	}); err != nil {
		t.Fatal(err)
	}
	checkRead(t, g, 5)
}

// TestSnapshotStreamChecked: a body damaged on the way is refused by the receiver; a
// stream without checksums (from an older broker) is accepted.
func TestSnapshotStreamChecked(t *testing.T) {
	db := openDB(t, t.TempDir())
	defer db.Close()
	lg := group(t, db, "p/t/0")
	lf, _ := partition.New(lg.Partition())
	fill(t, lf, 1, 20)
	snap, _ := lf.Snapshot()
	sk, _ := lg.SnapshotStore().Create(raft.SnapshotVersionMax, 20, 1, raft.Configuration{}, 1, nil)
	if err := snap.Persist(sk); err != nil {
		t.Fatal(err)
	}
	meta, rc, err := lg.SnapshotStore().Open(sk.ID())
	if err != nil {
		t.Fatal(err)
	}
	stream, _ := io.ReadAll(rc)
	if int64(len(stream)) != meta.Size {
		t.Fatalf("stream of %d bytes, meta says %d", len(stream), meta.Size)
	}
	st, enc, _ := partition.ReadSnapshotPrefix(bytes.NewReader(stream))
	prefix := int(partition.SnapshotPrefixLen(len(enc)))
	// The same messages without checksums, as an older broker streams them.
	var old bytes.Buffer
	old.Write(stream[:prefix])
	for r := bytes.NewReader(stream[prefix:]); ; {
		m, err := readSnapshotMessage(r)
		if err != nil {
			break
		}
		old.Write(binary.BigEndian.AppendUint32(nil, uint32(len(m))))
		old.Write(m)
	}
	bad := append([]byte(nil), stream...)
	bad[len(bad)-3] ^= 1
	for _, tc := range []struct {
		name string
		in   []byte
		ok   bool
	}{{"checked", stream, true}, {"damaged", bad, false}, {"older broker", old.Bytes(), true}} {
		t.Run(tc.name, func(t *testing.T) {
			fdb := openDB(t, t.TempDir())
			defer fdb.Close()
			fg := group(t, fdb, "p/t/0")
			fsk, _ := fg.SnapshotStore().Create(meta.Version, meta.Index, meta.Term, meta.Configuration, meta.ConfigurationIndex, nil)
			fsk.Write(tc.in)
			if err := fsk.Close(); (err == nil) != tc.ok {
				t.Fatalf("Close: %v", err)
			}
			if tc.ok {
				got, err := fg.Partition().Messages(0, uint32(st.Next))
				if err != nil || len(got) != int(st.Next) {
					t.Fatalf("%d messages: %v", len(got), err)
				}
			}
		})
	}
}

// FuzzSnapshotReceive: any bytes after the state never panic the receiver nor store
// a message that was not checked.
func FuzzSnapshotReceive(f *testing.F) {
	var ok bytes.Buffer
	for _, m := range [][]byte{[]byte("hello"), {}, bytes.Repeat([]byte{7}, 100)} {
		var hdr [8]byte
		binary.BigEndian.PutUint32(hdr[:], uint32(len(m))|withCRC)
		binary.BigEndian.PutUint32(hdr[4:], crc32c(m))
		ok.Write(hdr[:])
		ok.Write(m)
	}
	f.Add(ok.Bytes())
	f.Add(ok.Bytes()[:ok.Len()-1])
	f.Add([]byte{0, 0, 0, 3, 'a', 'b', 'c'})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bytes.NewReader(data)
		for {
			m, err := readSnapshotMessage(r)
			if err != nil {
				return
			}
			if len(m) > len(data) {
				t.Fatalf("a message of %d bytes from %d bytes", len(m), len(data))
			}
		}
	})
}

// FuzzParseRun: any index value either is refused or describes bodies whose reads stay
// inside it, and a body read through it is checked.
func FuzzParseRun(f *testing.F) {
	f.Add(encodeRun(0, dataPos{1, 10}, msgs(0, 3, 5)))
	old := encodeRun(0, dataPos{0, 0}, msgs(0, 2, 4))
	f.Add(old[:16+4*2])
	f.Add([]byte{0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, v []byte) {
		r, err := parseRun(make([]byte, 8), v)
		if err != nil {
			return
		}
		for i := range r.count() {
			if r.size(i) > r.end(r.count()-1) {
				t.Fatalf("message %d of %d bytes in a run of %d", i, r.size(i), r.end(r.count()-1))
			}
			_ = r.check(i, nil)
		}
	})
}

func crc32c(b []byte) uint32 { return crc32.Checksum(b, crcTable) }

// TestVerify: the offline check finds nothing on a clean broker's files and names the
// damaged message after a flip, without changing the files.
func TestVerify(t *testing.T) {
	dir := t.TempDir()
	db := openDB(t, dir)
	g := group(t, db, "p/t/0")
	if err := put(g, 0, msgs(0, 20, 100)); err != nil {
		t.Fatal(err)
	}
	p, at := bodyPos(t, g, 7)
	db.Close()
	var out bytes.Buffer
	if n, err := Verify(dir, &out); err != nil || n != 0 {
		t.Fatalf("clean: %d damaged, %v\n%s", n, err, out.String())
	}
	flipByte(t, p, at)
	out.Reset()
	n, err := Verify(dir, &out)
	if err != nil || n != 1 || !bytes.Contains(out.Bytes(), []byte("DAMAGED data: p/t/0: messages 7 to 7")) {
		t.Fatalf("after a flip: %d damaged, %v\n%s", n, err, out.String())
	}
}

// FuzzDecodeSnapshot: a stored snapshot's bytes, however damaged, decode or are refused;
// they never panic the broker.
func FuzzDecodeSnapshot(f *testing.F) {
	st := partition.NewState()
	st.Next, st.Bytes, st.Consumers["c"] = 3, 30, 1
	conf := raft.Configuration{Servers: []raft.Server{{ID: "b1", Address: "127.0.0.1:1"}}}
	good := encodeSnapshot(raft.SnapshotMeta{Index: 9, Term: 2, Configuration: conf}, partition.EncodeState(st))
	f.Add(good)
	f.Add(good[:len(good)/2])
	bad := append([]byte(nil), good...)
	bad[31] ^= 0xff
	f.Add(bad)
	f.Fuzz(func(t *testing.T, v []byte) {
		m, _, _, err := decodeSnapshot("id", v)
		if err == nil && m.Size < 0 {
			t.Fatalf("size %d", m.Size)
		}
	})
}

// TestScrub: the background verifier finds a damaged body nobody reads.
func TestScrub(t *testing.T) {
	dir := t.TempDir()
	db := openDB(t, dir)
	g := group(t, db, "p/t/0")
	if err := put(g, 0, msgs(0, 50, 100)); err != nil {
		t.Fatal(err)
	}
	p, at := bodyPos(t, g, 33)
	db.Close()
	flipByte(t, p, at)
	db = openDB(t, dir)
	defer db.Close()
	found := make(chan Fault, 10)
	db.OnFault(func(f Fault) { found <- f })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go db.Scrub(ctx, 1<<30, time.Hour)
	select {
	case f := <-found:
		if f.Group != "p/t/0" || f.From != 33 || f.To != 34 {
			t.Fatalf("found %v", f)
		}
	case <-time.After(time.Minute):
		t.Fatal("the scrubber found nothing")
	}
}
