package pgstore

import (
	"context"
	"embed"
	"fmt"
	"io/fs"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/migrate"
)

// migrationFiles are the schema's history, oldest first. A migration is never edited
// once it has landed (databases in the field have run it); a change is a new file,
// NNNN_name.tx.up.sql, whose statements run in one transaction and may run again after
// a crash between its commit and bun recording it (so write them to be repeatable).
//
//go:embed migrations/*.sql
var migrationFiles embed.FS

// migrations returns the schema migrations; the first n when n > 0 (for tests that
// build a database as an older binary left it).
func migrations(n int) (*migrate.Migrations, error) {
	dir, err := fs.Sub(migrationFiles, "migrations")
	if err != nil {
		return nil, err
	}
	all := migrate.NewMigrations()
	if err := all.Discover(dir); err != nil {
		return nil, fmt.Errorf("pgstore: read migrations: %w", err)
	}
	if n <= 0 {
		return all, nil
	}
	first := migrate.NewMigrations()
	for _, m := range all.Sorted()[:n] {
		first.Add(m)
	}
	return first, nil
}

// migrateSchema brings the database to the newest schema. A database made before
// there were migrations has the tables of the first one and no record of it: that
// migration's CREATE TABLE IF NOT EXISTS statements then change nothing.
func migrateSchema(ctx context.Context, db *bun.DB) error {
	return runMigrations(ctx, db, 0)
}

func runMigrations(ctx context.Context, db *bun.DB, n int) error {
	ms, err := migrations(n)
	if err != nil {
		return err
	}
	// Recorded only once a migration's transaction committed: a failed one runs again
	// at the next start instead of counting as done.
	m := migrate.NewMigrator(db, ms, migrate.WithMarkAppliedOnSuccess(true))
	if err := m.Init(ctx); err != nil {
		return fmt.Errorf("pgstore: create the migration tables: %w", err)
	}
	if _, err := m.Migrate(ctx); err != nil {
		return fmt.Errorf("pgstore: migrate the schema: %w", err)
	}
	return nil
}
