package pgstore

import (
	"context"
	"database/sql"
	"testing"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect/pgdialect"
	"github.com/uptrace/bun/driver/pgdriver"
	"github.com/uptrace/bun/migrate"

	"github.com/quorumq/quorumq/internal/devtools/pgserver"
	"github.com/quorumq/quorumq/manager/meta"
)

// TestMigrationsUpgradeOlderDatabase: a database an older binary left, holding
// metadata, is upgraded by Open and keeps every row; the upgraded store applies on.
func TestMigrationsUpgradeOlderDatabase(t *testing.T) {
	pg := pgserver.StartT(t)
	fresh := open(t, pg.DSN("fresh"))
	applyHistory(t, fresh)
	want := dump(t, fresh)
	rows, err := readRows(context.Background(), fresh.DB())
	if err != nil {
		t.Fatal(err)
	}
	rows.raft = raftRow(memoryState(fresh), fresh.AppliedIndex())

	for _, tc := range []struct {
		name string
		db   string
		// schema builds the older schema in an empty database.
		schema func(ctx context.Context, db *bun.DB) error
	}{
		{"made before migrations", "older_premigrate", func(ctx context.Context, db *bun.DB) error {
			// The binary before migrations ran the first one's statements and kept no
			// record of it.
			b, err := migrationFiles.ReadFile("migrations/0001_tables.tx.up.sql")
			if err == nil {
				_, err = db.ExecContext(ctx, string(b))
			}
			return err
		}},
		{"at migration 1", "older_m1", func(ctx context.Context, db *bun.DB) error { return runMigrations(ctx, db, 1) }},
		{"at migration 2 (before retention)", "older_m2", func(ctx context.Context, db *bun.DB) error { return runMigrations(ctx, db, 2) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			dsn := pg.DSN(tc.db)
			if err := ensureDatabase(ctx, dsn); err != nil {
				t.Fatal(err)
			}
			db := bun.NewDB(sql.OpenDB(pgdriver.NewConnector(pgdriver.WithDSN(dsn))), pgdialect.New())
			defer db.Close()
			if err := tc.schema(ctx, db); err != nil {
				t.Fatalf("older schema: %v", err)
			}
			if err := insertOlder(ctx, db, rows); err != nil {
				t.Fatalf("older rows: %v", err)
			}

			s := open(t, dsn)
			checkNewest(t, s.DB())
			if got := dump(t, s); got != want {
				t.Fatalf("after the upgrade the database holds\n%s\nwant\n%s", got, want)
			}
			if s.AppliedIndex() != fresh.AppliedIndex() {
				t.Fatalf("applied index %d after the upgrade, want %d", s.AppliedIndex(), fresh.AppliedIndex())
			}
			next := uint64(len(history) + 1)
			if r := apply(t, s, next, meta.RegisterProducer{Topic: "orders"}); r.Err != nil {
				t.Fatalf("apply after the upgrade: %v", r.Err)
			}
			upgraded := dump(t, s)
			s.Close()
			again := open(t, dsn) // migrated already: nothing to do, the new row is there
			if again.AppliedIndex() != next || dump(t, again) != upgraded {
				t.Fatalf("reopened at %d (want %d) holding\n%s", again.AppliedIndex(), next, dump(t, again))
			}
		})
	}
}

// checkNewest checks that every migration ran: all are recorded, and the last one's
// changes are there.
func checkNewest(t *testing.T, db *bun.DB) {
	t.Helper()
	ctx := context.Background()
	all, err := migrations(0)
	if err != nil {
		t.Fatal(err)
	}
	applied, err := migrate.NewMigrator(db, all).AppliedMigrations(ctx)
	if err != nil || len(applied) != len(all.Sorted()) {
		t.Fatalf("applied migrations %v (%v); want all %d", applied, err, len(all.Sorted()))
	}
	var seqs, checks int
	if err := db.NewSelect().TableExpr("information_schema.sequences").ColumnExpr("count(*)").
		Where("sequence_name NOT LIKE 'bun_%'").Scan(ctx, &seqs); err != nil {
		t.Fatal(err)
	}
	if err := db.NewSelect().TableExpr("information_schema.table_constraints").ColumnExpr("count(*)").
		Where("constraint_name = 'raft_state_one_row'").Scan(ctx, &checks); err != nil {
		t.Fatal(err)
	}
	if seqs != 0 || checks != 1 {
		t.Fatalf("%d sequences and %d raft_state_one_row constraints; want 0 and 1", seqs, checks)
	}
}

// insertOlder writes rows into only the columns the older tables have, as the older
// binary did; later columns are left to the migrations' defaults.
func insertOlder(ctx context.Context, db *bun.DB, r rows) error {
	for _, t := range []any{&r.topics, &r.partitions, &r.replicas, &r.brokers, &r.producers,
		&r.consumers, &r.keys, &r.next, &r.last} {
		if err := insertColumns(ctx, db, t); err != nil {
			return err
		}
	}
	_, err := db.NewUpdate().Model(&r.raft).Column("applied_index", "next_producer_id", "next_consumer_id").WherePK().Exec(ctx)
	return err
}

func insertColumns(ctx context.Context, db *bun.DB, rows any) error {
	q := db.NewInsert().Model(rows)
	var cols []string
	err := db.NewSelect().TableExpr("information_schema.columns").Column("column_name").
		Where("table_name = ?", q.GetTableName()).Scan(ctx, &cols)
	if err != nil {
		return err
	}
	if _, err := q.Column(cols...).Exec(ctx); err != nil {
		return err
	}
	return nil
}

func memoryState(s *Store) *meta.State {
	var st *meta.State
	s.Read(func(m *meta.State) { st = m })
	return st
}
