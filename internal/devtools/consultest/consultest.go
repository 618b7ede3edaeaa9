// Package consultest starts throw-away Consul dev agents for tests.
package consultest

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/quorumq/quorumq/consul"
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

// Flags are the flags that point a quorumq process at agent a with a token that may
// register service (discovery.ServiceBroker, ...) and read the catalog, as `quorumq
// dev` gives its children.
func Flags(t testing.TB, a *consulagent.Agent, service string) []string {
	t.Helper()
	return []string{"--consul", a.HTTPAddr(), "--consul-token-file", TokenFile(t, a, service)}
}

// TokenFile is a's token file for service (consulagent.Reader: read-only).
func TokenFile(t testing.TB, a *consulagent.Agent, service string) string {
	t.Helper()
	file, err := a.TokenFile(context.Background(), service)
	if err != nil {
		t.Fatalf("consultest: %v", err)
	}
	return file
}

// Backend is a backend on agent a with the token of name: a service name, or
// consulagent.Reader for what a client of the cluster sees.
func Backend(t testing.TB, a *consulagent.Agent, name string) *consul.Backend {
	t.Helper()
	tok, err := a.Token(context.Background(), name)
	if err != nil {
		t.Fatalf("consultest: %v", err)
	}
	b, err := consul.New(a.HTTPAddr(), tok, nil)
	if err != nil {
		t.Fatalf("consultest: %v", err)
	}
	return b
}
