package store

import (
	"encoding/binary"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/quorumq/quorumq/broker/partition"
	bolt "go.etcd.io/bbolt"
)

// indexed stores 30 messages in runs [0, 10), [10, 20), [20, 30) with the state that
// goes with them.
func indexed(t *testing.T, db *DB) *Group {
	t.Helper()
	g := group(t, db, "p/t/0")
	for first := 0; first < 30; first += 10 {
		if err := put(g, first, msgs(first, 10, 50)); err != nil {
			t.Fatal(err)
		}
	}
	if err := g.updateData(func(root *bolt.Bucket) error { return putState(root, nil, nil, 3, 30, 1500, 0) }); err != nil {
		t.Fatal(err)
	}
	return g
}

// damageIndex changes one byte of the index entries under keys (the value's byte at,
// or the key itself when at is negative), as a bad disk would.
func damageIndex(t *testing.T, g *Group, at int, keys ...uint64) {
	t.Helper()
	if err := g.updateData(func(root *bolt.Bucket) error {
		idx := root.Bucket(bIdx)
		for _, k := range keys {
			v := slices.Clone(idx.Get(u64key(k)))
			if err := idx.Delete(u64key(k)); err != nil {
				return err
			}
			nk := u64key(k)
			if at < 0 {
				nk[7] ^= 0x01
			} else {
				v[at] ^= 0x5a
			}
			if err := idx.Put(nk, v); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// TestIndexDamageRepaired: an index entry that fails its seal makes exactly its
// messages unreadable (IndexError naming them), is found when the store opens, and is
// repaired by storing the messages again, a part at a time.
func TestIndexDamageRepaired(t *testing.T) {
	cases := []struct {
		name     string
		at       int
		keys     []uint64
		from, to uint64
	}{
		{"first run", 20, []uint64{0}, 0, 10},
		{"middle run, count", 13, []uint64{10}, 10, 20},
		{"last run, a crc", 16 + 40 + 4, []uint64{20}, 20, 30},
		{"two runs", 30, []uint64{10, 20}, 10, 30},
		{"key", -1, []uint64{10}, 10, 20},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			db := openDB(t, dir)
			damageIndex(t, indexed(t, db), tc.at, tc.keys...)
			db.Close()
			db = openDB(t, dir)
			defer db.Close()
			var found []Fault
			db.OnFault(func(f Fault) { found = append(found, f) })
			if len(found) != 1 || !found[0].Index || found[0].From != tc.from || found[0].To != tc.to {
				t.Fatalf("faults found at open: %+v; want index [%d, %d)", found, tc.from, tc.to)
			}
			g := group(t, db, "p/t/0")
			p := g.Partition()
			var ie *IndexError
			if _, err := p.Messages(tc.from, 1); !errors.As(err, &ie) || ie.From != tc.from || ie.To != tc.to {
				t.Fatalf("read of a damaged range: %v", err)
			}
			if tc.from > 0 {
				if got, err := p.Messages(0, uint32(tc.from)); err != nil || !slices.EqualFunc(got, msgs(0, int(tc.from), 50), slices.Equal) {
					t.Fatalf("messages before the damage: %v", err)
				}
			}
			if end, err := g.end(); err != nil || end != 30 {
				t.Fatalf("stored end %d, %v; want 30", end, err)
			}
			for off := tc.from; off < tc.to; {
				n, err := p.RepairIndex(off, msgs(int(off), 4, 50))
				if err != nil || n == 0 {
					t.Fatalf("repair at %d: %d, %v", off, n, err)
				}
				off += uint64(n)
			}
			if n, err := p.RepairIndex(tc.from, msgs(int(tc.from), 4, 50)); n != 0 || err != nil {
				t.Fatalf("repair of a repaired range: %d, %v", n, err)
			}
			if got, err := p.Messages(0, 30); err != nil || !slices.EqualFunc(got, msgs(0, 30, 50), slices.Equal) {
				t.Fatalf("after the repair: %v", err)
			}
			if err := put(g, 30, msgs(30, 5, 50)); err != nil {
				t.Fatalf("store after the repair: %v", err)
			}
			db.Close()
			if n, err := Verify(dir, discard{}); n != 0 || err != nil {
				t.Fatalf("verify after the repair: %d, %v", n, err)
			}
		})
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// end is the stored end, as a commit sees it.
func (g *Group) end() (end uint64, err error) {
	err = g.viewData(func(root *bolt.Bucket) error {
		end, err = storedEnd(root)
		return err
	})
	return end, err
}

// TestFitWaitsForIndexRepair: Apply counts sizes with Fit, which must give every
// replica's answer: over a damaged index it waits for the repair, and gives up with
// partition.ErrDropped once the replica is dropped.
func TestFitWaitsForIndexRepair(t *testing.T) {
	db := openDB(t, t.TempDir())
	defer db.Close()
	g := indexed(t, db)
	damageIndex(t, g, 20, 10)
	p := g.Partition()
	type fit struct {
		n, size uint64
		err     error
	}
	done := make(chan fit, 1)
	go func() {
		n, size, err := p.Fit(5, 30, 1<<20)
		done <- fit{n, size, err}
	}()
	select {
	case f := <-done:
		t.Fatalf("Fit over a damaged index returned %+v", f)
	case <-time.After(3 * fitRetry):
	}
	if _, err := p.RepairIndex(10, msgs(10, 10, 50)); err != nil {
		t.Fatal(err)
	}
	if f := <-done; f.err != nil || f.n != 25 || f.size != 25*50 {
		t.Fatalf("Fit after the repair: %+v", f)
	}
	damageIndex(t, g, 20, 20)
	go func() {
		n, size, err := p.Fit(0, 30, 1<<20)
		done <- fit{n, size, err}
	}()
	p.Drop()
	if f := <-done; !errors.Is(f.err, partition.ErrDropped) {
		t.Fatalf("Fit of a dropped replica: %+v", f)
	}
	if err := p.Commit(&partition.Mutation{Applied: 9})(); !errors.Is(err, partition.ErrDropped) {
		t.Fatalf("commit of a dropped replica: %v", err)
	}
}

// TestIndexSealedAtOpen: entries written before the seal are read as they are and
// sealed when the store opens.
func TestIndexSealedAtOpen(t *testing.T) {
	dir := t.TempDir()
	db := openDB(t, dir)
	g := indexed(t, db)
	if err := g.updateData(func(root *bolt.Bucket) error {
		idx := root.Bucket(bIdx)
		for _, k := range []uint64{0, 10} {
			v := slices.Clone(idx.Get(u64key(k)))
			v = v[:len(v)-sealSize]
			binary.BigEndian.PutUint32(v[12:], binary.BigEndian.Uint32(v[12:])&^sealedRun)
			if k == 10 {
				v = v[:16+4*10] // from before the bodies' crcs
			}
			if err := idx.Put(u64key(k), v); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if got, err := g.Partition().Messages(0, 30); err != nil || !slices.EqualFunc(got, msgs(0, 30, 50), slices.Equal) {
		t.Fatalf("unsealed entries: %v", err)
	}
	db.Close()
	db = openDB(t, dir)
	defer db.Close()
	g = group(t, db, "p/t/0")
	if err := g.viewData(func(root *bolt.Bucket) error {
		return root.Bucket(bIdx).ForEach(func(k, v []byte) error {
			if binary.BigEndian.Uint32(v[12:])&sealedRun == 0 {
				t.Errorf("entry %d not sealed at open", binary.BigEndian.Uint64(k))
			}
			_, err := parseRun(k, v)
			return err
		})
	}); err != nil {
		t.Fatal(err)
	}
	if got, err := g.Partition().Messages(0, 30); err != nil || !slices.EqualFunc(got, msgs(0, 30, 50), slices.Equal) {
		t.Fatalf("sealed at open: %v", err)
	}
}
