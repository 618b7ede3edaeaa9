package consulagent_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/quorumq/quorumq/internal/devtools/consulagent"
)

func TestStartAgentReportsFailure(t *testing.T) {
	dir := t.TempDir()
	bogus := filepath.Join(dir, "consul")
	if err := os.WriteFile(bogus, []byte("#!/bin/sh\necho 'no agent here' >&2\nexit 3\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	_, err := consulagent.StartAgent(testCtx(t), consulagent.AgentConfig{Bin: bogus, DataDir: dir})
	if err == nil || !strings.Contains(err.Error(), "no agent here") {
		t.Fatalf("err = %v, want the agent's output in it", err)
	}
}

func TestBinPath(t *testing.T) {
	bin, err := consulagent.BinPath()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, env, want, wantErr string
	}{
		{"env wins", bin, bin, ""},
		{"env names a missing file", filepath.Join(t.TempDir(), "nope"), "", "is not an executable file"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Setenv(consulagent.BinEnv, c.env)
			got, err := consulagent.BinPath()
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("err = %v, want %q", err, c.wantErr)
				}
				return
			}
			if err != nil || got != c.want {
				t.Fatalf("BinPath = %q, %v; want %q", got, err, c.want)
			}
		})
	}
}

// A checkout without the binary runs consul/install.sh instead of failing or skipping.
func TestEnsureBinRunsInstallScript(t *testing.T) {
	root := t.TempDir()
	script := `#!/usr/bin/env bash
set -e
PATH=/usr/bin:/bin
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
mkdir -p "$root/bin"
printf '#!/bin/sh\necho fake consul\n' > "$root/bin/consul"
chmod +x "$root/bin/consul"
`
	for name, body := range map[string]string{"go.mod": "module example.com/x\n", "consul/install.sh": script} {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// Only bash on PATH, so no consul installed on this machine can be found instead.
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Fatal(err)
	}
	pathDir := t.TempDir()
	if err := os.Symlink(bash, filepath.Join(pathDir, "bash")); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", pathDir)
	t.Setenv(consulagent.BinEnv, "")
	t.Chdir(filepath.Join(root, "consul"))

	if _, err := consulagent.BinPath(); err == nil {
		t.Fatal("BinPath found a binary before the install ran")
	}
	got, err := consulagent.EnsureBin(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(root, "bin", "consul"); got != want {
		t.Fatalf("EnsureBin = %q, want %q", got, want)
	}
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}
