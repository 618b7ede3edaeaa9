// Package consultest starts throw-away Consul dev agents for tests.
package consultest

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/quorumq/quorumq/internal/devtools/consulagent"
)

// Start runs a dev agent on free loopback ports with its data in t.TempDir() and stops
// it when the test ends. A missing consul binary is built (consul/install.sh) rather
// than skipped: tests never skip for a missing dependency.
func Start(t testing.TB) *consulagent.Agent {
	t.Helper()
	// Generous: a fresh machine builds consul first (about 4 minutes).
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	bin, err := consulagent.EnsureBin(ctx)
	if err != nil {
		t.Fatalf("consultest: %v", err)
	}
	var a *consulagent.Agent
	// Free ports are picked before consul binds them; another process may win one.
	for attempt := 1; attempt <= 3; attempt++ {
		a, err = consulagent.StartAgent(ctx, consulagent.AgentConfig{Bin: bin, DataDir: t.TempDir()})
		if err == nil {
			break
		}
		t.Logf("consultest: attempt %d: %v", attempt, err)
	}
	if err != nil {
		t.Fatalf("consultest: start agent: %v", err)
	}
	t.Cleanup(func() {
		if err := a.Stop(); err != nil {
			t.Errorf("consultest: %v", err)
		}
		if t.Failed() {
			logTail(t, a.LogPath())
		}
	})
	return a
}

// logTail shows the end of the agent's log next to a failure.
func logTail(t testing.TB, path string) {
	b, err := os.ReadFile(path)
	if err != nil {
		return
	}
	const keep = 8 << 10
	if len(b) > keep {
		b = b[len(b)-keep:]
	}
	t.Logf("consultest: tail of %s:\n%s", path, b)
}
