package pgserver

import (
	"context"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
)

// StartT starts a throw-away server (fsync off) in a test's temporary directory and
// stops it when the test ends. Its logs go to t.Log.
func StartT(t testing.TB) *Server {
	t.Helper()
	s, err := Start(context.Background(), Config{
		DataDir: filepath.Join(t.TempDir(), "pg"),
		NoFsync: true,
		Logger:  slog.New(slog.NewTextHandler(tWriter{t}, nil)),
	})
	if err != nil {
		t.Fatalf("pgserver: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Stop(); err != nil {
			t.Errorf("pgserver: stop: %v", err)
		}
	})
	return s
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
