// Package consultest starts throw-away Consul dev agents for tests.
package consultest

import (
	"context"
	"testing"
	"time"

	"github.com/quorumq/quorumq/consul"
)

// Start runs a dev agent on free loopback ports with its data in t.TempDir() and stops
// it when the test ends. A missing consul binary is built (consul/install.sh) rather
// than skipped: tests never skip for a missing dependency.
func Start(t testing.TB) *consul.Agent {
	t.Helper()
	// Generous: a fresh machine builds consul first (about 4 minutes).
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	bin, err := consul.EnsureBin(ctx)
	if err != nil {
		t.Fatalf("consultest: %v", err)
	}
	var a *consul.Agent
	// Free ports are picked before consul binds them; another process may win one.
	for attempt := 1; attempt <= 3; attempt++ {
		a, err = consul.StartAgent(ctx, consul.AgentConfig{Bin: bin, DataDir: t.TempDir()})
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
	})
	return a
}
