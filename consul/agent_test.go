package consul_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/quorumq/quorumq/consul"
	"github.com/quorumq/quorumq/consul/consultest"
)

func TestAgentsRunSideBySide(t *testing.T) {
	a, b := consultest.Start(t), consultest.Start(t)
	if a.HTTPAddr() == b.HTTPAddr() || a.Config().ServerPort == b.Config().ServerPort || a.Config().SerfLANPort == b.Config().SerfLANPort {
		t.Fatalf("agents share ports: %+v and %+v", a.Config(), b.Config())
	}
	for _, ag := range []*consul.Agent{a, b} {
		if _, err := newBackend(t, ag.HTTPAddr()).Healthy(testCtx(t), "x"); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Stop(); err != nil {
		t.Fatal(err)
	}
	if a.Pid() != 0 {
		t.Fatalf("pid %d after Stop", a.Pid())
	}
	if err := a.Stop(); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
	if _, err := newBackend(t, b.HTTPAddr()).Healthy(testCtx(t), "x"); err != nil {
		t.Fatalf("stopping one agent affected the other: %v", err)
	}
}

func TestStartAgentReportsFailure(t *testing.T) {
	dir := t.TempDir()
	bogus := filepath.Join(dir, "consul")
	if err := os.WriteFile(bogus, []byte("#!/bin/sh\necho 'no agent here' >&2\nexit 3\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	_, err := consul.StartAgent(testCtx(t), consul.AgentConfig{Bin: bogus, DataDir: dir})
	if err == nil || !strings.Contains(err.Error(), "no agent here") {
		t.Fatalf("err = %v, want the agent's output in it", err)
	}
}

func TestBinPath(t *testing.T) {
	bin, err := consul.BinPath()
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
			t.Setenv(consul.BinEnv, c.env)
			got, err := consul.BinPath()
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
	t.Setenv(consul.BinEnv, "")
	t.Chdir(filepath.Join(root, "consul"))

	if _, err := consul.BinPath(); err == nil {
		t.Fatal("BinPath found a binary before the install ran")
	}
	got, err := consul.EnsureBin(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(root, "bin", "consul"); got != want {
		t.Fatalf("EnsureBin = %q, want %q", got, want)
	}
}
