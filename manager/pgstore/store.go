// Package pgstore is the managers' Raft FSM: it applies metadata commands (package meta)
// to an in-memory state and materialises the entries into PostgreSQL through bun, in
// the background (write.go), each write one transaction that also records the Raft
// index the tables reflect. Entries at or below the recorded index are skipped, so a
// restart never applies an entry twice.
package pgstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect/pgdialect"
	"github.com/uptrace/bun/driver/pgdriver"

	"github.com/quorumq/quorumq/internal/retry"
	"github.com/quorumq/quorumq/manager/meta"
)

// ErrClosed is returned by an Apply that could not write to PostgreSQL before Close.
var ErrClosed = errors.New("pgstore: closed")

// Store is a raft.FSM over the metadata, materialised in one PostgreSQL database.
type Store struct {
	db     *bun.DB
	logger *slog.Logger
	// closing stops the retry loop of an Apply waiting for PostgreSQL to come back.
	closing context.Context
	close   context.CancelFunc

	mu      sync.RWMutex
	state   *meta.State
	applied uint64 // the last index applied to state

	w writer
}

// Open connects to the database the DSN names (creating it on the server when it does
// not exist), applies the schema migrations it lacks, and loads the state recorded there.
func Open(ctx context.Context, dsn string, logger *slog.Logger) (*Store, error) {
	if logger == nil {
		logger = slog.Default()
	}
	if err := ensureDatabase(ctx, dsn); err != nil {
		return nil, err
	}
	db := bun.NewDB(sql.OpenDB(pgdriver.NewConnector(pgdriver.WithDSN(dsn))), pgdialect.New())
	if err := migrateSchema(ctx, db); err != nil {
		db.Close()
		return nil, err
	}
	r, err := readRows(ctx, db)
	if err != nil {
		db.Close()
		return nil, err
	}
	s := &Store{db: db, logger: logger}
	s.state, s.applied = fromRows(r)
	s.closing, s.close = context.WithCancel(context.Background())
	s.w.written.Store(s.applied)
	s.w.start(s)
	return s, nil
}

// ensureDatabase creates the DSN's database through the server's maintenance database.
func ensureDatabase(ctx context.Context, dsn string) error {
	u, err := url.Parse(dsn)
	if err != nil {
		return fmt.Errorf("pgstore: bad DSN: %w", err)
	}
	name := strings.TrimPrefix(u.Path, "/")
	if name == "" || name == "postgres" {
		return nil
	}
	admin := *u
	admin.Path = "/postgres"
	db := sql.OpenDB(pgdriver.NewConnector(pgdriver.WithDSN(admin.String())))
	defer db.Close()
	var exists bool
	if err := db.QueryRowContext(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", name).Scan(&exists); err != nil {
		return fmt.Errorf("pgstore: look up database %q: %w", name, err)
	}
	if exists {
		return nil
	}
	_, err = db.ExecContext(ctx, `CREATE DATABASE "`+strings.ReplaceAll(name, `"`, `""`)+`"`)
	var pgErr pgdriver.Error
	if err != nil && !(errors.As(err, &pgErr) && pgErr.Field('C') == "42P04") { // 42P04: created concurrently
		return fmt.Errorf("pgstore: create database %q: %w", name, err)
	}
	return nil
}

// Close writes what the tables still lack (waiting at most closeWait for PostgreSQL),
// stops pending retries and closes the connection pool.
func (s *Store) Close() error {
	s.w.close(s.close)
	return s.db.Close()
}

// DB is the bun handle, for read-only queries (tests compare tables through it).
func (s *Store) DB() *bun.DB { return s.db }

// Read runs fn with the current state; fn must not keep or modify it.
func (s *Store) Read(fn func(*meta.State)) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	fn(s.state)
}

// AppliedIndex is the last Raft index the database reflects (the state in memory may
// be ahead of it: the database follows).
func (s *Store) AppliedIndex() uint64 { return s.w.written.Load() }

// Apply implements raft.FSM: it returns the encoded meta.Result.
func (s *Store) Apply(l *raft.Log) any { return s.ApplyBatch([]*raft.Log{l})[0] }

// ApplyBatch implements raft.BatchingFSM: it applies the entries to the state and
// hands what they changed to the background write, which writes what has gathered
// since the last one in one transaction.
func (s *Store) ApplyBatch(logs []*raft.Log) []any {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]any, len(logs))
	var (
		all  changeSet
		last uint64
	)
	for i, l := range logs {
		if l.Type != raft.LogCommand || l.Index <= s.applied {
			// Already in the database (a replay after restart): nobody waits for the result.
			out[i] = meta.EncodeResult(meta.Result{})
			continue
		}
		res, changes := s.state.Apply(l.Data)
		out[i] = meta.EncodeResult(res)
		all.add(changes)
		last = l.Index
	}
	if last == 0 {
		return out
	}
	s.w.add(s.state, all.Changes, last)
	s.applied = last
	return out
}

// changeSet merges the Changes of several commands, each entity once: writeChanges
// rewrites an entity's rows from the state after the last of them.
type changeSet struct {
	meta.Changes
	seen map[string]bool
}

func (c *changeSet) add(ch meta.Changes) {
	if c.seen == nil {
		c.seen = map[string]bool{}
	}
	c.Topics = addNew(c.seen, "t", c.Topics, ch.Topics)
	c.Brokers = addNew(c.seen, "b", c.Brokers, ch.Brokers)
	c.Producers = addNew(c.seen, "p", c.Producers, ch.Producers)
	c.Consumers = addNew(c.seen, "c", c.Consumers, ch.Consumers)
	c.Keys = addNew(c.seen, "k", c.Keys, ch.Keys)
	c.Positions = addNew(c.seen, "s", c.Positions, ch.Positions)
	c.Counters = c.Counters || ch.Counters
}

func addNew[T comparable](seen map[string]bool, kind string, to, from []T) []T {
	for _, v := range from {
		k := fmt.Sprint(kind, "/", v)
		if !seen[k] {
			seen[k] = true
			to = append(to, v)
		}
	}
	return to
}

// CheckCommand implements election.CommandChecker with meta.Check.
func (s *Store) CheckCommand(cmd []byte) error { return meta.Check(cmd) }

// retry runs op until it succeeds or the store closes. The FSM cannot skip an entry,
// so an unreachable database stalls the log here rather than losing the write.
func (s *Store) retry(op func(ctx context.Context) error) error {
	b := retry.Policy{First: 50 * time.Millisecond, Max: 2 * time.Second}.Start()
	for {
		ctx, cancel := context.WithTimeout(s.closing, 10*time.Second)
		err := op(ctx)
		cancel()
		if err == nil {
			return nil
		}
		wait, _ := b.Next()
		s.logger.Error("pgstore: write failed; retrying", "err", err, "in", wait)
		if retry.Sleep(s.closing, wait) != nil {
			return ErrClosed
		}
	}
}

func writeChanges(ctx context.Context, tx bun.Tx, st *meta.State, ch meta.Changes, applied uint64) error {
	for _, name := range ch.Topics {
		for _, m := range []any{(*replicaRow)(nil), (*partitionRow)(nil)} {
			if _, err := tx.NewDelete().Model(m).Where("topic = ?", name).Exec(ctx); err != nil {
				return err
			}
		}
		if _, err := tx.NewDelete().Model((*topicRow)(nil)).Where("name = ?", name).Exec(ctx); err != nil {
			return err
		}
		if t, ok := st.Topics[name]; ok {
			tr, ps, rs := topicRows(t)
			if err := insertAll(ctx, tx, &[]topicRow{tr}, &ps, &rs); err != nil {
				return err
			}
		}
	}
	for _, id := range ch.Brokers {
		if _, err := tx.NewDelete().Model((*brokerRow)(nil)).Where("id = ?", id).Exec(ctx); err != nil {
			return err
		}
		if b, ok := st.Brokers[id]; ok {
			if err := insertAll(ctx, tx, &[]brokerRow{brokerRowOf(b)}); err != nil {
				return err
			}
		}
	}
	var ps []producerRow
	for _, id := range ch.Producers {
		ps = append(ps, producerRow{ID: int64(id), Topic: st.Producers[id].Topic})
	}
	var cs []consumerRow
	for _, id := range ch.Consumers {
		cs = append(cs, consumerRowOf(st.Consumers[id]))
	}
	if err := insertAll(ctx, tx, &ps, &cs); err != nil {
		return err
	}
	if err := writeKeys(ctx, tx, st, ch.Keys); err != nil {
		return err
	}
	if err := writePositions(ctx, tx, st, ch.Positions); err != nil {
		return err
	}
	row := raftRow(st, applied)
	_, err := tx.NewUpdate().Model(&row).WherePK().Exec(ctx)
	return err
}

// writeKeys rewrites the rows of the idempotency keys a command touched: removed when
// the state no longer has them.
func writeKeys(ctx context.Context, tx bun.Tx, st *meta.State, keys []string) error {
	if len(keys) == 0 {
		return nil
	}
	if _, err := tx.NewDelete().Model((*keyRow)(nil)).Where("key IN (?)", bun.In(keys)).Exec(ctx); err != nil {
		return err
	}
	var rows []keyRow
	for _, k := range keys {
		if e, ok := st.Keys[k]; ok {
			rows = append(rows, keyRowOf(k, e))
		}
	}
	return insertAll(ctx, tx, &rows)
}

// writePositions rewrites the positions by seq of the consumers a command moved.
func writePositions(ctx context.Context, tx bun.Tx, st *meta.State, ids []uint64) error {
	for _, id := range ids {
		for _, m := range []any{(*consumerNextRow)(nil), (*consumerLastRow)(nil)} {
			if _, err := tx.NewDelete().Model(m).Where("consumer_id = ?", int64(id)).Exec(ctx); err != nil {
				return err
			}
		}
		next, last := positionRows(st.Consumers[id])
		if err := insertAll(ctx, tx, &next, &last); err != nil {
			return err
		}
	}
	return nil
}

// snapshot is the payload of a Raft snapshot: the state and the index it reflects.
type snapshot struct {
	Index uint64          `json:"index"`
	State json.RawMessage `json:"state"`
}

// Snapshot implements raft.FSM. The in-memory state equals the tables at this index,
// so capturing it is the cheap form of dumping them.
func (s *Store) Snapshot() (raft.FSMSnapshot, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	raw, err := s.state.Marshal()
	if err != nil {
		return nil, err
	}
	return &fsmSnapshot{snap: snapshot{Index: s.applied, State: raw}}, nil
}

type fsmSnapshot struct{ snap snapshot }

func (f *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	if err := json.NewEncoder(sink).Encode(f.snap); err != nil {
		sink.Cancel()
		return err
	}
	return sink.Close()
}

func (f *fsmSnapshot) Release() {}

// Restore implements raft.FSM: truncate every table and load the snapshot, in one
// transaction. A snapshot older than what the database holds already (the usual case
// at restart) is skipped: the log entries after it are skipped the same way.
func (s *Store) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	var snap snapshot
	if err := json.NewDecoder(rc).Decode(&snap); err != nil {
		return fmt.Errorf("pgstore: decode snapshot: %w", err)
	}
	st, err := meta.Unmarshal(snap.State)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if snap.Index <= s.applied {
		s.logger.Info("pgstore: database already past the snapshot; keeping it", "snapshot", snap.Index, "applied", s.applied)
		return nil
	}
	s.w.tx.Lock()
	defer s.w.tx.Unlock()
	if err := s.retry(func(ctx context.Context) error { return replaceAll(ctx, s.db, st, snap.Index) }); err != nil {
		return err
	}
	s.w.reset(snap.Index)
	s.state, s.applied = st, snap.Index
	return nil
}

// Reset empties the database: for a manager whose Raft directory was wiped, so that the
// log it receives again is applied from the start.
func (s *Store) Reset(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.w.tx.Lock()
	defer s.w.tx.Unlock()
	st := meta.NewState()
	if err := replaceAll(ctx, s.db, st, 0); err != nil {
		return err
	}
	s.w.reset(0)
	s.state, s.applied = st, 0
	return nil
}

func replaceAll(ctx context.Context, db *bun.DB, st *meta.State, applied uint64) error {
	r := toRows(st, applied)
	return db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		for _, m := range models() {
			if _, err := tx.NewTruncateTable().Model(m).Exec(ctx); err != nil {
				return err
			}
		}
		return insertAll(ctx, tx, &r.topics, &r.partitions, &r.replicas, &r.brokers,
			&r.producers, &r.consumers, &r.keys, &r.next, &r.last, &[]raftStateRow{r.raft})
	})
}

// Dump reads the metadata back from the tables (not from memory) as canonical JSON,
// without the applied index, so that two managers' databases can be compared.
func Dump(ctx context.Context, db bun.IDB) (string, error) {
	r, err := readRows(ctx, db)
	if err != nil {
		return "", err
	}
	st, _ := fromRows(r)
	b, err := st.Marshal() // encoding/json sorts map keys: canonical
	return string(b), err
}
