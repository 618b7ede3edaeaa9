package pgserver_test

import (
	"context"
	"database/sql"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/uptrace/bun/driver/pgdriver"

	"github.com/quorumq/quorumq/internal/devtools/pgserver"
)

func open(t *testing.T, dsn string) *sql.DB {
	t.Helper()
	db := sql.OpenDB(pgdriver.NewConnector(pgdriver.WithDSN(dsn)))
	t.Cleanup(func() { db.Close() })
	return db
}

func TestStartT(t *testing.T) {
	s := pgserver.StartT(t)
	ctx := context.Background()
	if err := s.CreateDatabase(ctx, "app"); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateDatabase(ctx, "app"); err != nil {
		t.Fatalf("CreateDatabase must be idempotent: %v", err)
	}
	var one int
	if err := open(t, s.DSN("app")).QueryRowContext(ctx, "select 1").Scan(&one); err != nil || one != 1 {
		t.Fatalf("select 1 = %d, %v", one, err)
	}
}

// TestRestartKeepsData stops a durable server and starts it again on the same directory.
func TestRestartKeepsData(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "pg")
	s, err := pgserver.Start(ctx, pgserver.Config{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Stop() })
	if err := s.CreateDatabase(ctx, "kept"); err != nil {
		t.Fatal(err)
	}
	if _, err := open(t, s.DSN("kept")).ExecContext(ctx,
		"create table t (v text); insert into t values ('hello')"); err != nil {
		t.Fatal(err)
	}
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}

	s2, err := pgserver.Start(ctx, pgserver.Config{DataDir: dir, Port: s.Port()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s2.Stop() })
	var v string
	if err := open(t, s2.DSN("kept")).QueryRowContext(ctx, "select v from t").Scan(&v); err != nil || v != "hello" {
		t.Fatalf("after restart: %q, %v", v, err)
	}
	if err := s2.Stop(); err != nil {
		t.Fatal(err)
	}
}

// TestStartWaitsForPreviousServer starts again while the previous server on the same
// directory is still shutting down, as after `quorumq dev` was killed and restarted.
func TestStartWaitsForPreviousServer(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "pg")
	s, err := pgserver.Start(ctx, pgserver.Config{DataDir: dir, NoFsync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Stop() })
	if err := syscall.Kill(s.Pid(), syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	s2, err := pgserver.Start(ctx, pgserver.Config{DataDir: dir, NoFsync: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := s2.Stop(); err != nil {
		t.Fatal(err)
	}
}

func TestStartRejectsEmptyDataDir(t *testing.T) {
	if _, err := pgserver.Start(context.Background(), pgserver.Config{}); err == nil {
		t.Fatal("want an error without DataDir")
	}
}
