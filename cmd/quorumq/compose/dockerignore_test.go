package compose

import (
	"os"
	"path/filepath"
	"testing"
)

// TestDockerignore checks that the build context leaves out what builds and runs leave
// in the checkout (bin/ holds the Makefile's output, .quorumq/ `make dev`'s data) and
// keeps the source, and the matcher's Docker semantics on a made-up list.
func TestDockerignore(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(moduleRoot(t), ".dockerignore"))
	if err != nil {
		t.Fatal(err)
	}
	ours := parseDockerignore(string(b))
	demo := parseDockerignore("# comment\n/build/\n**/*.log\ndocs\n!docs/keep.md\n")
	for _, tc := range []struct {
		rules    ignoreRules
		path     string
		excluded bool
	}{
		{ours, ".git/HEAD", true},
		{ours, "bin/quorumq", true},
		{ours, ".quorumq/m1/raft.db", true},
		{ours, "broker/broker.test", true},
		{ours, "quorumq", true},
		{ours, "go.mod", false},
		{ours, "Makefile", false},
		{ours, "cmd/quorumq/main.go", false},
		{ours, "consul/config/compose.hcl", false},
		{demo, "build/x/y", true},
		{demo, "src/build/x", false},
		{demo, "a.log", true},
		{demo, "a/b/c.log", true},
		{demo, "docs/x.md", true},
		{demo, "docs/keep.md", false},
		{demo, "mydocs", false},
	} {
		if got := tc.rules.excluded(tc.path); got != tc.excluded {
			t.Errorf("%s: excluded %v, want %v", tc.path, got, tc.excluded)
		}
	}
}
