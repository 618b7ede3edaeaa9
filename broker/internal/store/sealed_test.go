package store

import (
	"errors"
	"testing"

	"github.com/hashicorp/raft"

	"github.com/quorumq/quorumq/broker/partition"
	bolt "go.etcd.io/bbolt"
)

// TestStateSealed: a flipped bit in any value of a partition's state is found when the
// state is loaded; values written before the seal still load.
func TestStateSealed(t *testing.T) {
	for _, tt := range []struct {
		name   string
		bucket []byte
		key    string
		change func(v []byte) []byte
		err    error
	}{
		{"state flipped", bMeta, "state", func(v []byte) []byte { v[3] ^= 1; return v }, ErrDamaged},
		{"consumer flipped", bCons, "c", func(v []byte) []byte { v[7] ^= 0x10; return v }, ErrDamaged},
		{"producer flipped", bProd, "p", func(v []byte) []byte { v[0] ^= 0x80; return v }, ErrDamaged},
		{"seal flipped", bMeta, "state", func(v []byte) []byte { v[len(v)-1] ^= 1; return v }, ErrDamaged},
		{"cut short", bCons, "c", func(v []byte) []byte { return v[:5] }, ErrDamaged},
		{"state unsealed", bMeta, "state", func(v []byte) []byte { return v[:len(v)-sealSize] }, nil},
		{"consumer unsealed", bCons, "c", func(v []byte) []byte { return v[:len(v)-sealSize] }, nil},
		{"producer unsealed", bProd, "p", func(v []byte) []byte { return v[:len(v)-sealSize] }, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			db := openDB(t, t.TempDir())
			defer db.Close()
			g := group(t, db, "p/t/0")
			f, err := partition.New(g.Partition())
			if err != nil {
				t.Fatal(err)
			}
			apply(t, f, 1, partition.EncodeRegister("c"))
			apply(t, f, 2, partition.EncodeProduce([]partition.Batch{{Producer: "p", Seq: 1, Msgs: [][]byte{[]byte("m")}}}))
			apply(t, f, 3, partition.EncodeConsume(partition.ConsumeRequest{Consumer: "c", Max: 1, MaxBytes: 1 << 20}))
			if _, err := f.Messages(0, 1); err != nil { // waits for the commits
				t.Fatal(err)
			}
			if err := g.updateData(func(root *bolt.Bucket) error {
				b := root.Bucket(tt.bucket)
				v := append([]byte(nil), b.Get([]byte(tt.key))...)
				return b.Put([]byte(tt.key), tt.change(v))
			}); err != nil {
				t.Fatal(err)
			}
			st, err := g.Partition().Load()
			if !errors.Is(err, tt.err) {
				t.Fatalf("Load: %v, want %v", err, tt.err)
			}
			if err == nil && (st.Applied != 3 || st.Next != 1 || st.Consumers["c"] != 1 || st.Producers["p"].Seq != 1) {
				t.Fatalf("Load of unsealed values: %+v", st)
			}
		})
	}
}

// TestSnapshotSealed: a stored snapshot (which carries the state a follower is sent)
// that fails its checksum is reported by Check and never listed; one stored before the
// seal is read unchecked.
func TestSnapshotSealed(t *testing.T) {
	for _, tt := range []struct {
		name   string
		change func(v []byte) []byte
		err    error
	}{
		{"sound", func(v []byte) []byte { return v }, nil},
		{"index flipped", func(v []byte) []byte { v[7] ^= 1; return v }, ErrDamaged},
		{"state flipped", func(v []byte) []byte { v[len(v)-sealSize-1] ^= 4; return v }, ErrDamaged},
		{"unsealed", func(v []byte) []byte { v[24] &^= snapSealed; return v[:len(v)-sealSize] }, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			db := openDB(t, t.TempDir())
			defer db.Close()
			g := group(t, db, "p/t/0")
			sk, err := g.SnapshotStore().Create(raft.SnapshotVersionMax, 7, 1, raft.Configuration{}, 1, nil)
			if err != nil {
				t.Fatal(err)
			}
			st := partition.NewState()
			st.Applied = 7
			if err := partition.WriteSnapshotPrefix(sk, st); err != nil || sk.Close() != nil {
				t.Fatal(err)
			}
			if err := g.update(bSnap, func(b *bolt.Bucket) error {
				v := append([]byte(nil), b.Get([]byte(sk.ID()))...)
				return b.Put([]byte(sk.ID()), tt.change(v))
			}); err != nil {
				t.Fatal(err)
			}
			if err := g.SnapshotStore().Check(); !errors.Is(err, tt.err) {
				t.Fatalf("Check: %v, want %v", err, tt.err)
			}
			if tt.err == nil {
				if l, err := g.SnapshotStore().List(); err != nil || len(l) != 1 || l[0].Index != 7 || l[0].Version != raft.SnapshotVersionMax {
					t.Fatalf("List: %+v %v", l, err)
				}
			}
		})
	}
}
