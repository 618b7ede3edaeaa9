package election

import (
	"errors"
	"log/slog"
	"path/filepath"
	"slices"
	"testing"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
)

func openBolt(t *testing.T) *raftboltdb.BoltStore {
	t.Helper()
	b, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(t.TempDir(), "raft.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

func entry(i uint64) *raft.Log {
	return &raft.Log{Index: i, Term: 2, Type: raft.LogCommand, Data: []byte{byte(i), 'x'}}
}

// A data directory written before seals existed is still read, and sealed at the next
// open; from then on an entry without a seal is damage.
func TestOldLogsSealedAtOpen(t *testing.T) {
	b := openBolt(t)
	for i := uint64(1); i <= 600; i++ {
		if err := b.StoreLog(entry(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.SetUint64([]byte("CurrentTerm"), 7); err != nil {
		t.Fatal(err)
	}
	var bad []uint64
	logs := &checkedLogs{LogStore: b, damaged: func(i uint64, _ error) { bad = append(bad, i) }}
	stable := &checkedStable{StableStore: b, damaged: func(string, error) { bad = append(bad, 0) }}
	var got raft.Log
	if err := logs.GetLog(5, &got); err != nil || !slices.Equal(got.Data, entry(5).Data) {
		t.Fatalf("old entry before check: %+v, %v", got, err)
	}
	if err := stable.check(); err != nil {
		t.Fatal(err)
	}
	if cut, err := logs.check(b, 0, slog.New(slog.DiscardHandler)); cut != nil || err != nil {
		t.Fatalf("check: %v, %v", cut, err)
	}
	if _, err := b.Get(keySealed); err != nil || !logs.strict {
		t.Fatalf("not marked sealed: %v", err)
	}
	stable.strict = true
	for i := uint64(1); i <= 600; i++ {
		var raw raft.Log
		if err := b.GetLog(i, &raw); err != nil || len(raw.Extensions) != sealLen {
			t.Fatalf("entry %d not sealed: %+v %v", i, raw, err)
		}
		if err := logs.GetLog(i, &got); err != nil || got.Index != i || !slices.Equal(got.Data, entry(i).Data) || got.Extensions != nil {
			t.Fatalf("entry %d after sealing: %+v, %v", i, got, err)
		}
	}
	if v, err := stable.GetUint64([]byte("CurrentTerm")); err != nil || v != 7 {
		t.Fatalf("term after sealing: %d, %v", v, err)
	}
	// An unsealed entry now is damage.
	if err := b.StoreLog(entry(601)); err != nil {
		t.Fatal(err)
	}
	if err := logs.GetLog(601, &got); err == nil || !slices.Equal(bad, []uint64{601}) {
		t.Fatalf("unsealed entry in a sealed log: %v, reported %v", err, bad)
	}
}

// Every kind of change to a stored entry or value is caught, and the damaged value is
// never handed out.
func TestSealsCatchChanges(t *testing.T) {
	b := openBolt(t)
	var bad []uint64
	logs := &checkedLogs{LogStore: b, strict: true, damaged: func(i uint64, _ error) { bad = append(bad, i) }}
	withExt := entry(3)
	withExt.Extensions = []byte("app")
	for _, l := range []*raft.Log{entry(1), entry(2), withExt} {
		if err := logs.StoreLog(l); err != nil {
			t.Fatal(err)
		}
	}
	var got raft.Log
	if err := logs.GetLog(3, &got); err != nil || string(got.Extensions) != "app" {
		t.Fatalf("extensions: %+v, %v", got, err)
	}
	tests := []struct {
		name   string
		change func(l *raft.Log)
	}{
		{"data", func(l *raft.Log) { l.Data[0] ^= 1 }},
		{"term", func(l *raft.Log) { l.Term++ }},
		{"type", func(l *raft.Log) { l.Type = raft.LogNoop }},
		{"seal", func(l *raft.Log) { l.Extensions[5] ^= 0x80 }},
		{"no seal", func(l *raft.Log) { l.Extensions = nil }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var raw raft.Log
			if err := b.GetLog(2, &raw); err != nil {
				t.Fatal(err)
			}
			tc.change(&raw)
			if err := b.StoreLog(&raw); err != nil {
				t.Fatal(err)
			}
			bad = nil
			var got raft.Log
			err := logs.GetLog(2, &got)
			if !errors.Is(err, errDamaged) || got.Data != nil || !slices.Equal(bad, []uint64{2}) {
				t.Fatalf("GetLog of a changed entry: %+v, %v (reported %v)", got, err, bad)
			}
			if err := logs.StoreLog(entry(2)); err != nil {
				t.Fatal(err)
			}
		})
	}
	// An entry read back at another index (a misdirected write) fails too.
	var one raft.Log
	if err := b.GetLog(1, &one); err != nil {
		t.Fatal(err)
	}
	if _, err := unseal(2, &one, true); !errors.Is(err, errDamaged) {
		t.Fatalf("entry 1 read at index 2: %v", err)
	}

	var kinds []string
	stable := &checkedStable{StableStore: b, strict: true, damaged: func(k string, _ error) { kinds = append(kinds, k) }}
	if err := stable.SetUint64([]byte("CurrentTerm"), 9); err != nil {
		t.Fatal(err)
	}
	raw, _ := b.Get([]byte("CurrentTerm"))
	raw[7] ^= 4
	if err := b.Set([]byte("CurrentTerm"), raw); err != nil {
		t.Fatal(err)
	}
	if v, err := stable.GetUint64([]byte("CurrentTerm")); err == nil || err.Error() != "not found" || v != 0 || len(kinds) != 1 {
		t.Fatalf("damaged term read as %d, %v (reported %v)", v, err, kinds)
	}
}

// check cuts the log at the first damaged entry past the snapshot, and only drops a
// damaged entry the snapshot covers.
func TestCheckCutsAtDamage(t *testing.T) {
	tests := []struct {
		name      string
		snapIndex uint64
		wantCut   bool
		first     uint64
		last      uint64
	}{
		{"past the snapshot", 3, true, 1, 4},
		{"covered by the snapshot", 6, false, 6, 10},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := openBolt(t)
			logs := &checkedLogs{LogStore: b, strict: true, damaged: func(uint64, error) {}}
			for i := uint64(1); i <= 10; i++ {
				if err := logs.StoreLog(entry(i)); err != nil {
					t.Fatal(err)
				}
			}
			var raw raft.Log
			b.GetLog(5, &raw)
			raw.Data[1] ^= 1
			b.StoreLog(&raw)
			cut, err := logs.check(b, tc.snapIndex, slog.New(slog.DiscardHandler))
			if err != nil || (cut != nil) != tc.wantCut {
				t.Fatalf("check: cut %v, err %v", cut, err)
			}
			first, _ := b.FirstIndex()
			last, _ := b.LastIndex()
			if first != tc.first || last != tc.last {
				t.Fatalf("log after check: %d..%d, want %d..%d", first, last, tc.first, tc.last)
			}
		})
	}
}

// BenchmarkSeal is the checksum's cost per stored and read entry of 256 bytes.
func BenchmarkSeal(b *testing.B) {
	l := &raft.Log{Index: 7, Term: 2, Type: raft.LogCommand, Data: make([]byte, 256)}
	b.SetBytes(int64(len(l.Data)))
	for b.Loop() {
		s := seal(l)
		if _, err := unseal(7, s, true); err != nil {
			b.Fatal(err)
		}
	}
}

// batchingStable counts the commits of a store that writes batches.
type batchingStable struct {
	*raftboltdb.BoltStore
	commits int
}

func (b *batchingStable) Set(k, v []byte) error { b.commits++; return b.BoltStore.Set(k, v) }

func (b *batchingStable) SetBatch(keys, vals [][]byte) error {
	b.commits++
	for i, k := range keys {
		if err := b.BoltStore.Set(k, vals[i]); err != nil {
			return err
		}
	}
	return nil
}

// checkedOver returns a counting bolt store and a checkedStable over it, which sees the
// store's SetBatch only if batching.
func checkedOver(t *testing.T, batching bool) (*batchingStable, *checkedStable) {
	bs := &batchingStable{BoltStore: openBolt(t)}
	var store raft.StableStore = bs
	if !batching {
		store = struct{ raft.StableStore }{bs}
	}
	return bs, &checkedStable{StableStore: store, damaged: func(string, error) { t.Error("damage reported") }}
}

// A vote (LastVoteTerm, then LastVoteCand, as raft's persistVote writes it) is one
// commit on a store that batches, two on one that does not; either way both keys read
// back, the term even before the candidate is written.
func TestVoteIsOneCommit(t *testing.T) {
	for _, batching := range []bool{true, false} {
		bs, s := checkedOver(t, batching)
		if err := s.SetUint64([]byte("CurrentTerm"), 5); err != nil {
			t.Fatal(err)
		}
		if err := s.SetUint64([]byte("LastVoteTerm"), 5); err != nil {
			t.Fatal(err)
		}
		if v, err := s.GetUint64([]byte("LastVoteTerm")); err != nil || v != 5 {
			t.Fatalf("batching %v: LastVoteTerm before the candidate: %d %v", batching, v, err)
		}
		if err := s.Set([]byte("LastVoteCand"), []byte("b2")); err != nil {
			t.Fatal(err)
		}
		want := map[bool]int{true: 2, false: 3}[batching]
		if bs.commits != want {
			t.Errorf("batching %v: %d commits for a term and a vote, want %d", batching, bs.commits, want)
		}
		fresh := &checkedStable{StableStore: bs, strict: true, damaged: func(string, error) { t.Error("damage reported") }}
		if v, err := fresh.GetUint64([]byte("LastVoteTerm")); err != nil || v != 5 {
			t.Errorf("batching %v: LastVoteTerm stored %d %v", batching, v, err)
		}
		if v, err := fresh.Get([]byte("LastVoteCand")); err != nil || string(v) != "b2" {
			t.Errorf("batching %v: LastVoteCand stored %q %v", batching, v, err)
		}
	}
}

// On a store that batches, the seal mark of a new store goes with its first value, in
// the same commit; elsewhere it is written at once.
func TestSealMarkGoesWithFirstValue(t *testing.T) {
	for _, batching := range []bool{true, false} {
		bs, s := checkedOver(t, batching)
		if err := s.markSealed(); err != nil || !s.strict {
			t.Fatalf("batching %v: markSealed %v, strict %v", batching, err, s.strict)
		}
		if err := s.SetUint64([]byte("CurrentTerm"), 1); err != nil {
			t.Fatal(err)
		}
		if v, err := bs.Get(keySealed); err != nil || len(v) != 1 || bs.commits != map[bool]int{true: 1, false: 2}[batching] {
			t.Errorf("batching %v: mark %v %v after %d commits", batching, v, err, bs.commits)
		}
	}
}
