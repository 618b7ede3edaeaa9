package store

import (
	"errors"
	"fmt"
	"io"
	"runtime"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/quorumq/quorumq/broker/partition"
	"github.com/quorumq/quorumq/election"
	bolt "go.etcd.io/bbolt"
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
	if err := g.StableStore().SetUint64([]byte("CurrentTerm"), 1); !errors.Is(err, ErrNoGroup) {
		t.Fatalf("write to a deleted group: %v", err)
	}
}

// AddReplica records a replica and creates its raft.db buckets in one commit: opening
// its group then writes raft.db no more, and a reopen writes neither file.
func TestAddReplicaMakesTheGroupsBuckets(t *testing.T) {
	db := openDB(t, t.TempDir())
	defer db.Close()
	before, dataBefore := db.log.txid(), db.data.txid()
	if err := db.AddReplica("p/t/0", []byte(`{"topic":"t"}`), nil); err != nil {
		t.Fatal(err)
	}
	if got, data := db.log.txid(), db.data.txid(); got != before+1 || data != dataBefore+1 {
		t.Fatalf("AddReplica took %d raft.db and %d data.db commits, want 1 each", got-before, data-dataBefore)
	}
	g, err := db.Group("p/t/0")
	if err != nil {
		t.Fatal(err)
	}
	if got, data := db.log.txid(), db.data.txid(); got != before+1 || data != dataBefore+1 {
		t.Errorf("Group after AddReplica committed to raft.db %d and data.db %d times, want 0", got-before-1, data-dataBefore-1)
	}
	if err := g.StableStore().SetUint64([]byte("CurrentTerm"), 3); err != nil {
		t.Fatal(err)
	}
	if reps, err := db.Replicas(); err != nil || string(reps["p/t/0"]) != `{"topic":"t"}` {
		t.Errorf("Replicas = %q, %v", reps, err)
	}
	logID, dataID := db.log.txid(), db.data.txid()
	if _, err := db.Group("p/t/0"); err != nil {
		t.Fatal(err)
	}
	if db.log.txid() != logID || db.data.txid() != dataID {
		t.Errorf("reopening the group wrote raft.db %d and data.db %d times", db.log.txid()-logID, db.data.txid()-dataID)
	}
}

// AddReplica with a new group's bootstrap entry writes raft's starting state in the
// same commits as the record, term 1 in raft.db and the entry in the WAL, so raft
// finds state to start on; where the group has state already, it writes none.
func TestAddReplicaBootstraps(t *testing.T) {
	db := openDB(t, t.TempDir())
	defer db.Close()
	boot := &raft.Log{Index: 1, Term: 1, Type: raft.LogConfiguration, Data: []byte("configuration")}
	before := db.log.txid()
	if err := db.AddReplica("p/t/0", []byte(`{}`), boot); err != nil {
		t.Fatal(err)
	}
	if n := db.log.txid() - before; n != 1 {
		t.Errorf("AddReplica took %d raft.db commits, want 1", n)
	}
	g, err := db.Group("p/t/0")
	if err != nil {
		t.Fatal(err)
	}
	if has, err := raft.HasExistingState(g.LogStore(), g.StableStore(), g.SnapshotStore()); err != nil || !has {
		t.Fatalf("raft state after AddReplica with boot: %v, %v", has, err)
	}
	var got raft.Log
	if term, err := g.StableStore().GetUint64(election.KeyCurrentTerm); err != nil || term != 1 {
		t.Errorf("term %d, %v; want 1", term, err)
	}
	if err := g.LogStore().GetLog(1, &got); err != nil || got.Type != raft.LogConfiguration || string(got.Data) != "configuration" {
		t.Errorf("entry 1: %+v, %v", got, err)
	}

	// A group with state keeps it: another entry 1 and term 1 are not written.
	if err := g.StableStore().SetUint64(election.KeyCurrentTerm, 5); err != nil {
		t.Fatal(err)
	}
	if err := db.AddReplica("p/t/0", []byte(`{}`), &raft.Log{Index: 1, Term: 1, Type: raft.LogConfiguration, Data: []byte("other")}); err != nil {
		t.Fatal(err)
	}
	if term, err := g.StableStore().GetUint64(election.KeyCurrentTerm); err != nil || term != 5 {
		t.Errorf("term %d, %v after a second AddReplica; want 5 kept", term, err)
	}
	if err := g.LogStore().GetLog(1, &got); err != nil || string(got.Data) != "configuration" {
		t.Errorf("entry 1 after a second AddReplica: %q, %v; want the first kept", got.Data, err)
	}
}

// Writes queued while raft.db's committer pauses after a commit (logCommitPause) share
// one commit: groups write their terms and votes one at a time, and each commit is two
// fsyncs.
func TestWritesDuringThePauseShareACommit(t *testing.T) {
	db := openDB(t, t.TempDir())
	defer db.Close()
	if err := db.AddReplica("p/t/0", []byte(`{}`), nil); err != nil {
		t.Fatal(err)
	}
	committed := time.Now()
	before := db.log.txid()
	var waits []<-chan error
	for i := range 10 {
		name := []byte(fmt.Sprintf("p/t/%d", i+1))
		waits = append(waits, db.log.updateAsync(func(tx *bolt.Tx) error { return createBuckets(tx, name, groupLogBuckets) }))
		for start := time.Now(); time.Since(start) < logCommitPause/50; { // one at a time, as groups write (time.Sleep takes a millisecond or more)
			runtime.Gosched()
		}
	}
	queued := time.Since(committed)
	for _, w := range waits {
		if err := <-w; err != nil {
			t.Fatal(err)
		}
	}
	if queued >= logCommitPause {
		t.Logf("the writes took %v to queue, longer than the pause: not counted", queued)
		return
	}
	if n := db.log.txid() - before; n != 1 {
		t.Errorf("10 writes queued during the pause took %d commits, want 1", n)
	}
}

// kickSoon and kick end a delayed committer's pause (data.db's is 100 ms; here an hour,
// so that only the kick can end it).
func TestKicksEndThePause(t *testing.T) {
	for _, kick := range []string{"kick", "kickSoon"} {
		t.Run(kick, func(t *testing.T) {
			f := &file{delay: time.Hour, kicks: make(chan struct{}, 1), soon: make(chan struct{}, 1)}
			done := make(chan struct{})
			go func() { f.pause(nil); close(done) }()
			map[string]func(){"kick": f.kick, "kickSoon": f.kickSoon}[kick]()
			select {
			case <-done:
			case <-time.After(30 * time.Second):
				t.Fatalf("%s did not end the pause", kick)
			}
		})
	}
}

// txid is the id of the file's last committed transaction: commits are counted by it.
func (d *file) txid() (id int) {
	d.bolt.View(func(tx *bolt.Tx) error { id = tx.ID(); return nil })
	return id
}
