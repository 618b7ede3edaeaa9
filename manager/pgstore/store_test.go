package pgstore

import (
	"bytes"
	"context"
	"io"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/quorumq/quorumq/internal/devtools/pgserver"
	"github.com/quorumq/quorumq/manager/meta"
)

func open(t *testing.T, dsn string) *Store {
	t.Helper()
	s, err := Open(context.Background(), dsn, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// apply applies c at index and waits until the tables reflect it.
func apply(t *testing.T, s *Store, index uint64, c meta.Command) meta.Result {
	t.Helper()
	r := applyOnly(t, s, index, c)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.Sync(ctx); err != nil {
		t.Fatalf("tables never reflected entry %d: %v", index, err)
	}
	return r
}

// applyOnly applies c at index without waiting for the tables.
func applyOnly(t *testing.T, s *Store, index uint64, c meta.Command) meta.Result {
	t.Helper()
	out := s.Apply(&raft.Log{Index: index, Type: raft.LogCommand, Data: meta.Encode(c)})
	b, ok := out.([]byte)
	if !ok {
		t.Fatalf("apply %d returned %v", index, out)
	}
	r, _ := meta.DecodeResult(b)
	return r
}

var history = []meta.Command{
	meta.BrokerUp{ID: "b1", Addr: "h:1", RaftAddr: "h:2"},
	meta.BrokerUp{ID: "b2", Addr: "h:3", RaftAddr: "h:4"},
	meta.BrokerUp{ID: "b3", Addr: "h:5", RaftAddr: "h:6"},
	meta.CreateTopic{Name: "orders", Partitions: 3, Replication: 2},
	meta.CreateTopic{Name: "orders", Partitions: 1, Replication: 1}, // refused, still an entry
	meta.RegisterProducer{Topic: "orders"},
	meta.RegisterConsumer{Topic: "orders", Partition: new(int)},
	meta.RegisterConsumer{Topic: "orders"},
	meta.BrokerDown{ID: "b2"},
	meta.AddPartitions{Topic: "orders", Count: 1},
	// Positions of consumes by seq: where a partition stood, then a reply recorded.
	meta.Consumed{Consumer: 2, Partition: 1, From: 5},
	meta.Consumed{Consumer: 2, Seq: 7, Partition: 1, From: 5, Count: 3},
	// Idempotency keys are materialised too: a first run, its replay, a refusal.
	meta.Keyed{Key: "k1", At: 1000, Cmd: meta.Encode(meta.RegisterProducer{Topic: "orders"})},
	meta.Keyed{Key: "k1", At: 2000, Cmd: meta.Encode(meta.RegisterProducer{Topic: "orders"})},
	meta.Keyed{Key: "k2", At: 3000, Cmd: meta.Encode(meta.CreateTopic{Name: "orders", Partitions: 1, Replication: 1})},
}

func applyHistory(t *testing.T, s *Store) {
	t.Helper()
	for i, c := range history {
		apply(t, s, uint64(i+1), c)
	}
}

func dump(t *testing.T, s *Store) string {
	t.Helper()
	d, err := Dump(context.Background(), s.DB())
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func memory(t *testing.T, s *Store) string {
	t.Helper()
	var out []byte
	var err error
	s.Read(func(st *meta.State) { out, err = st.Marshal() })
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

func TestApplyRestartSkipsApplied(t *testing.T) {
	pg := pgserver.StartT(t)
	ctx := context.Background()
	s := open(t, pg.DSN("m1"))
	applyHistory(t, s)
	if got, want := dump(t, s), memory(t, s); got != want {
		t.Fatalf("tables differ from memory:\n%s\n%s", got, want)
	}
	var n int
	if err := s.DB().NewRaw("SELECT count(*) FROM replicas").Scan(ctx, &n); err != nil || n != 8 {
		t.Fatalf("replicas rows = %d, %v; want 8", n, err)
	}
	var idx int64
	if err := s.DB().NewRaw("SELECT applied_index FROM raft_state").Scan(ctx, &idx); err != nil || idx != int64(len(history)) {
		t.Fatalf("applied_index = %d, %v", idx, err)
	}
	before := memory(t, s)
	s.Close()

	s2 := open(t, pg.DSN("m1"))
	if got := memory(t, s2); got != before {
		t.Fatalf("reloaded state differs:\n%s\n%s", got, before)
	}
	if s2.AppliedIndex() != uint64(len(history)) {
		t.Fatalf("applied %d", s2.AppliedIndex())
	}
	// The log replays after a restart: entries already applied change nothing.
	applyHistory(t, s2)
	if got := memory(t, s2); got != before {
		t.Fatal("replayed entries were applied twice")
	}
	if id := apply(t, s2, uint64(len(history)+1), meta.RegisterProducer{Topic: "orders"}).ID; id != 3 {
		t.Fatalf("next producer id %d, want 3", id)
	}
	// A key outlives the restart: its repeat answers the first producer id again.
	if r := apply(t, s2, uint64(len(history)+2), history[len(history)-2]); !r.Replayed || r.ID != 2 {
		t.Fatalf("keyed register after a restart: %+v, want producer 2 replayed", r)
	}
	if n, err := s2.DB().NewSelect().Model((*keyRow)(nil)).Count(ctx); err != nil || n != 2 {
		t.Fatalf("idempotency_keys rows = %d, %v; want 2", n, err)
	}
	if got, want := dump(t, s2), memory(t, s2); got != want {
		t.Fatal("tables differ from memory after restart")
	}
}

type sink struct{ bytes.Buffer }

func (*sink) ID() string    { return "test" }
func (*sink) Cancel() error { return nil }
func (*sink) Close() error  { return nil }

func snapshotOf(t *testing.T, s *Store) []byte {
	t.Helper()
	snap, err := s.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	var k sink
	if err := snap.Persist(&k); err != nil {
		t.Fatal(err)
	}
	return k.Bytes()
}

func TestSnapshotRestoreReset(t *testing.T) {
	pg := pgserver.StartT(t)
	a := open(t, pg.DSN("a"))
	applyHistory(t, a)
	full := snapshotOf(t, a)

	b := open(t, pg.DSN("b"))
	apply(t, b, 1, meta.BrokerUp{ID: "zz"})
	if err := b.Restore(io.NopCloser(bytes.NewReader(full))); err != nil {
		t.Fatal(err)
	}
	if dump(t, b) != dump(t, a) || memory(t, b) != memory(t, a) || b.AppliedIndex() != a.AppliedIndex() {
		t.Fatal("restored store differs from the source")
	}

	// An older snapshot than the database holds is skipped.
	c := open(t, pg.DSN("c"))
	apply(t, c, 1, history[0])
	old := snapshotOf(t, c)
	if err := b.Restore(io.NopCloser(bytes.NewReader(old))); err != nil {
		t.Fatal(err)
	}
	if dump(t, b) != dump(t, a) {
		t.Fatal("an older snapshot replaced newer tables")
	}

	if err := b.Reset(context.Background()); err != nil {
		t.Fatal(err)
	}
	empty := open(t, pg.DSN("empty"))
	if b.AppliedIndex() != 0 || dump(t, b) != dump(t, empty) {
		t.Fatal("reset left data")
	}
}

// An entry applied while PostgreSQL is down answers at once (Raft holds it) and lands
// in the tables, exactly once, when PostgreSQL is back.
func TestApplyWaitsForPostgres(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "pg")
	pg, err := pgserver.Start(ctx, pgserver.Config{DataDir: dir, NoFsync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pg.Stop() })
	s := open(t, pg.DSN("m1"))
	apply(t, s, 1, history[0])
	if err := pg.Stop(); err != nil {
		t.Fatal(err)
	}
	if r := applyOnly(t, s, 2, meta.CreateTopic{Name: "late", Partitions: 1, Replication: 1}); r.Err != nil || r.Topic == nil || r.Topic.Name != "late" {
		t.Fatalf("result %+v", r)
	}
	if s.AppliedIndex() != 1 {
		t.Fatalf("tables reflect %d while PostgreSQL is down, want 1", s.AppliedIndex())
	}
	pg2, err := pgserver.Start(ctx, pgserver.Config{DataDir: dir, Port: pg.Port(), NoFsync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pg2.Stop() })
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := s.Sync(sctx); err != nil {
		t.Fatalf("tables not written after PostgreSQL came back: %v", err)
	}
	if got, want := dump(t, s), memory(t, s); got != want || s.AppliedIndex() != 2 {
		t.Fatalf("after the outage: applied %d, tables\n%s\nmemory\n%s", s.AppliedIndex(), got, want)
	}
}

// Entries applied faster than the tables are written gather into fewer writes, each
// entity written as the last entry left it: the tables end up as the state in memory.
func TestBackgroundWritesGather(t *testing.T) {
	pg := pgserver.StartT(t)
	s := open(t, pg.DSN("m1"))
	for i, c := range history {
		applyOnly(t, s, uint64(i+1), c)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if got, want := dump(t, s), memory(t, s); got != want || s.AppliedIndex() != uint64(len(history)) {
		t.Fatalf("applied %d; tables\n%s\nmemory\n%s", s.AppliedIndex(), got, want)
	}
}
