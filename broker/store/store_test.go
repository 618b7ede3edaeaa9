package store

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"sync"
	"testing"

	"github.com/hashicorp/raft"
	"github.com/quorumq/quorumq/broker/partition"
)

func openDB(t testing.TB, dir string) *DB {
	t.Helper()
	db, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	return db
}

func group(t testing.TB, db *DB, name string) *Group {
	t.Helper()
	g, err := db.Group(name)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func TestLogStore(t *testing.T) {
	db := openDB(t, t.TempDir())
	defer db.Close()
	ls := group(t, db, "p/t/0").LogStore()
	other := group(t, db, "p/t/1").LogStore()

	tests := []struct {
		name        string
		do          func() error
		first, last uint64
	}{
		{"empty", func() error { return nil }, 0, 0},
		{"store one", func() error {
			return ls.StoreLog(&raft.Log{Index: 1, Term: 1, Type: raft.LogCommand, Data: []byte("a")})
		}, 1, 1},
		{"store many", func() error {
			var logs []*raft.Log
			for i := uint64(2); i <= 10; i++ {
				logs = append(logs, &raft.Log{Index: i, Term: 2, Data: []byte{byte(i)}, Extensions: []byte("x")})
			}
			return ls.StoreLogs(logs)
		}, 1, 10},
		{"delete a prefix", func() error { return ls.DeleteRange(1, 4) }, 5, 10},
		{"delete a suffix", func() error { return ls.DeleteRange(9, 10) }, 5, 8},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.do(); err != nil {
				t.Fatal(err)
			}
			first, _ := ls.FirstIndex()
			last, _ := ls.LastIndex()
			if first != tt.first || last != tt.last {
				t.Fatalf("first %d last %d, want %d %d", first, last, tt.first, tt.last)
			}
		})
	}
	var l raft.Log
	if err := ls.GetLog(7, &l); err != nil || l.Term != 2 || !bytes.Equal(l.Data, []byte{7}) || string(l.Extensions) != "x" {
		t.Fatalf("GetLog(7) = %+v, %v", l, err)
	}
	if err := ls.GetLog(4, &l); !errors.Is(err, raft.ErrLogNotFound) {
		t.Fatalf("GetLog(4) = %v, want ErrLogNotFound", err)
	}
	if last, _ := other.LastIndex(); last != 0 {
		t.Fatalf("groups share a log: other group's last index %d", last)
	}
}

func TestStableStore(t *testing.T) {
	db := openDB(t, t.TempDir())
	defer db.Close()
	ss := group(t, db, "g").StableStore()
	if _, err := ss.GetUint64([]byte("CurrentTerm")); err == nil || err.Error() != "not found" {
		t.Fatalf("missing key: %v (raft needs exactly \"not found\")", err)
	}
	if err := ss.SetUint64([]byte("CurrentTerm"), 42); err != nil {
		t.Fatal(err)
	}
	if v, err := ss.GetUint64([]byte("CurrentTerm")); v != 42 || err != nil {
		t.Fatalf("got %d %v", v, err)
	}
	if err := ss.Set([]byte("LastVoteCand"), []byte("b2")); err != nil {
		t.Fatal(err)
	}
	if v, _ := ss.Get([]byte("LastVoteCand")); string(v) != "b2" {
		t.Fatalf("got %q", v)
	}
}

func apply(t testing.TB, f *partition.FSM, index uint64, cmd []byte) []byte {
	t.Helper()
	out, _ := f.Apply(&raft.Log{Index: index, Type: raft.LogCommand, Data: cmd}).([]byte)
	return out
}

// fill applies n produce entries, from Raft index index, of one message each: "m<offset>".
func fill(t testing.TB, f *partition.FSM, index, n int) {
	for i := range n {
		_, next, _, _ := f.Info()
		apply(t, f, uint64(index+i), partition.EncodeProduce([]partition.Batch{{Msgs: [][]byte{[]byte(fmt.Sprintf("m%d", next))}}}))
	}
}

func checkMessages(t testing.TB, f *partition.FSM, n int) {
	t.Helper()
	got, err := f.Messages(0, uint32(n))
	if err != nil {
		t.Fatal(err)
	}
	for i, m := range got {
		if string(m) != fmt.Sprintf("m%d", i) {
			t.Fatalf("message %d = %q", i, m)
		}
	}
}

func TestPartitionSurvivesReopen(t *testing.T) {
	dir := t.TempDir()
	db := openDB(t, dir)
	f, err := partition.New(group(t, db, "p/t/0").Partition())
	if err != nil {
		t.Fatal(err)
	}
	apply(t, f, 1, partition.EncodeRegister("c"))
	fill(t, f, 2, 5)
	apply(t, f, 7, partition.EncodeConsume(partition.ConsumeRequest{Consumer: "c", Max: 2, MaxBytes: 1 << 20}))
	db.Close()

	db = openDB(t, dir)
	defer db.Close()
	f, err = partition.New(group(t, db, "p/t/0").Partition())
	if err != nil {
		t.Fatal(err)
	}
	if applied, next, bytes, consumers := f.Info(); applied != 7 || next != 5 || bytes != 10 || consumers != 1 {
		t.Fatalf("after reopen: applied %d next %d bytes %d consumers %d", applied, next, bytes, consumers)
	}
	if left, _ := f.Left("c"); left != 3 {
		t.Fatalf("left %d", left)
	}
	// Raft replays entry 7 (not yet covered by a snapshot): nothing happens twice.
	if out := apply(t, f, 7, partition.EncodeConsume(partition.ConsumeRequest{Consumer: "c", Max: 2})); out != nil {
		t.Fatalf("entry 7 applied twice: %v", out)
	}
	checkMessages(t, f, 5)
}

// TestSnapshotToFollower takes a snapshot on one broker's store and installs it on
// another's, the way raft does: Persist → sink, Open → the follower's sink → Restore.
func TestSnapshotToFollower(t *testing.T) {
	leaderDB, followerDB := openDB(t, t.TempDir()), openDB(t, t.TempDir())
	defer leaderDB.Close()
	defer followerDB.Close()
	lg := group(t, leaderDB, "p/t/0")
	lf, _ := partition.New(lg.Partition())
	apply(t, lf, 1, partition.EncodeRegister("c"))
	fill(t, lf, 2, 300)

	snap, _ := lf.Snapshot()
	conf := raft.Configuration{Servers: []raft.Server{{ID: "b1", Address: "127.0.0.1:1"}}}
	sk, _ := lg.SnapshotStore().Create(raft.SnapshotVersionMax, 301, 3, conf, 1, nil)
	if err := snap.Persist(sk); err != nil {
		t.Fatal(err)
	}
	if err := sk.Close(); err != nil { // raft closes the sink again after Persist
		t.Fatal(err)
	}
	// Messages written after the snapshot must not leak into it.
	fill(t, lf, 302, 10)

	list, err := lg.SnapshotStore().List()
	if err != nil || len(list) != 1 || list[0].Index != 301 || len(list[0].Configuration.Servers) != 1 {
		t.Fatalf("List = %+v, %v", list, err)
	}
	meta, rc, err := lg.SnapshotStore().Open(list[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	fg := group(t, followerDB, "p/t/0")
	fsk, _ := fg.SnapshotStore().Create(meta.Version, meta.Index, meta.Term, meta.Configuration, meta.ConfigurationIndex, nil)
	n, err := io.Copy(fsk, rc)
	if err != nil || n != meta.Size {
		t.Fatalf("streamed %d bytes (meta says %d): %v", n, meta.Size, err)
	}
	if err := fsk.Close(); err != nil {
		t.Fatal(err)
	}

	ff, _ := partition.New(fg.Partition())
	_, frc, err := fg.SnapshotStore().Open(fsk.ID())
	if err != nil {
		t.Fatal(err)
	}
	if err := ff.Restore(frc); err != nil {
		t.Fatal(err)
	}
	if applied, next, _, consumers := ff.Info(); applied != 301 || next != 300 || consumers != 1 {
		t.Fatalf("follower: applied %d next %d consumers %d", applied, next, consumers)
	}
	checkMessages(t, ff, 300)
	// The follower carries on from the snapshot.
	fill(t, ff, 302, 1)
	checkMessages(t, ff, 301)
}

func TestSnapshotsArePruned(t *testing.T) {
	db := openDB(t, t.TempDir())
	defer db.Close()
	ss := group(t, db, "g").SnapshotStore()
	for i := uint64(1); i <= 4; i++ {
		sk, _ := ss.Create(raft.SnapshotVersionMax, i, 1, raft.Configuration{}, 0, nil)
		st := partition.NewState()
		st.Applied = i
		if err := partition.WriteSnapshotPrefix(sk, st); err != nil {
			t.Fatal(err)
		}
		if err := sk.Close(); err != nil {
			t.Fatal(err)
		}
	}
	cancelled, _ := ss.Create(raft.SnapshotVersionMax, 9, 1, raft.Configuration{}, 0, nil)
	cancelled.Write([]byte{1, 0})
	cancelled.Cancel()
	list, _ := ss.List()
	if len(list) != retainSnapshots || list[0].Index != 4 || list[1].Index != 3 {
		t.Fatalf("kept %+v", list)
	}
}

func TestDeleteGroup(t *testing.T) {
	db := openDB(t, t.TempDir())
	defer db.Close()
	g := group(t, db, "p/t/0")
	if err := db.SetReplica("p/t/0", []byte("peers")); err != nil {
		t.Fatal(err)
	}
	if reps, _ := db.Replicas(); string(reps["p/t/0"]) != "peers" {
		t.Fatalf("replicas %v", reps)
	}
	if err := db.DeleteGroup("p/t/0"); err != nil {
		t.Fatal(err)
	}
	if reps, _ := db.Replicas(); len(reps) != 0 {
		t.Fatalf("replicas after delete %v", reps)
	}
	if err := g.LogStore().StoreLog(&raft.Log{Index: 1}); !errors.Is(err, ErrNoGroup) {
		t.Fatalf("write to a deleted group: %v", err)
	}
}

// TestConcurrentGroupsShareCommits: 64 partitions appending at once are committed in
// fewer transactions (fsyncs) than appends, and nothing is lost.
func TestConcurrentGroupsShareCommits(t *testing.T) {
	db := openDB(t, t.TempDir())
	defer db.Close()
	const groups, appends = 64, 20
	var wg sync.WaitGroup
	txs0, _ := db.Stats()
	for g := range groups {
		ls := group(t, db, fmt.Sprintf("p/t/%d", g)).LogStore()
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := uint64(1); i <= appends; i++ {
				if err := ls.StoreLog(&raft.Log{Index: i, Data: make([]byte, 1024)}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	txs, _ := db.Stats()
	t.Logf("%d appends in %d transactions", groups*appends, txs-txs0)
	if txs-txs0 >= groups*appends {
		t.Fatalf("no sharing: %d appends took %d transactions", groups*appends, txs-txs0)
	}
	for g := range groups {
		if last, _ := group(t, db, fmt.Sprintf("p/t/%d", g)).LogStore().LastIndex(); last != appends {
			t.Fatalf("group %d: last index %d", g, last)
		}
	}
}

// BenchmarkAppend64Partitions measures durable 1 KiB appends from 64 busy partitions
// (each append waits for its fsync, as raft does).
func BenchmarkAppend64Partitions(b *testing.B) {
	db := openDB(b, b.TempDir())
	defer db.Close()
	const groups = 64
	var next [groups]uint64
	stores := make([]*LogStore, groups)
	for g := range stores {
		stores[g] = group(b, db, fmt.Sprintf("p/t/%d", g)).LogStore()
	}
	txs0, w0 := db.Stats()
	b.SetBytes(1024)
	b.ResetTimer()
	var wg sync.WaitGroup
	per := b.N/groups + 1
	for g := range groups {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range per {
				next[g]++
				if err := stores[g].StoreLog(&raft.Log{Index: next[g], Data: make([]byte, 1024)}); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	txs, w := db.Stats()
	b.ReportMetric(float64(w-w0)/float64(txs-txs0), "appends/fsync")
	b.ReportMetric(float64(groups*per)/b.Elapsed().Seconds(), "appends/s")
}
