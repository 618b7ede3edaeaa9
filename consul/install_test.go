package consul_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// install.sh runs here against fakes of go and consul on a PATH of their own: the real
// build takes minutes and needs the network.

// fakeConsul answers `version` like Consul, then writes more after a pause: a reader that
// stopped at the first line (head -1, grep -q) is gone by then, so under pipefail the
// pipeline fails with SIGPIPE every time instead of now and then.
const fakeConsul = `#!/usr/bin/env bash
set -e
echo "Consul v1.20.1"
sleep 0.3
for ((i = 0; i < 2000; i++)); do echo "Protocol line $i"; done
`

// fakeGo stands in for the go command. FAKE_GO: "none" fails on any use; "build" builds
// fakeConsul; "fail" fails the build; "block" never finishes it. Whatever the mode, the
// build first waits (bounded) for a progress line, so the progress loop is running when it
// ends.
const fakeGo = `#!/usr/bin/env bash
set -e
# Ctrl-C ends it as it ends go. Without the trap bash would go on when the signal came
# while its sleep was exiting anyway (it exits only if the child died of it too).
trap 'exit 130' INT
[[ "$FAKE_GO" != none ]] || { echo "fake go: go must not run here: $*" >&2; exit 3; }
case "$1" in
mod)
  [[ "$2" != download ]] || printf '{\n\t"Path": "github.com/hashicorp/consul",\n\t"Dir": "%s",\n\t"Origin": {\n\t\t"VCS": "git",\n\t\t"Hash": "920cc7c649225b52e1c45951e609c3d37a49324d"\n\t}\n}\n' "$FAKE_MODULE"
  exit 0 ;;
get) exit 0 ;;
build) ;;
*) echo "fake go: unexpected go $*" >&2; exit 2 ;;
esac
while (($#)); do
  case "$1" in
  -o) out="$2"; shift ;;
  -ldflags) echo "$2" >"$FAKE_LOG/ldflags"; shift ;;
  esac
  shift
done
cp agent/uiserver/dist/index.html "$FAKE_LOG/index.html"
for ((i = 0; i < 400; i++)); do
  ! grep -q "still building" "$FAKE_STDERR" || break
  sleep 0.05
done
case "$FAKE_GO" in
fail) echo "fake go: build failed" >&2; exit 1 ;;
block) touch "$FAKE_LOG/building"; while :; do sleep 0.05; done ;;
esac
cp "$FAKE_CONSUL" "$out"
`

// The module's prebuilt UI page, cut down to the config tag that carries the version.
const fakeUIPage = `<meta name="consul-ui/config/environment" content="%7B%22CONSUL_GIT_SHA%22%3A%223c24c4918d%22%2C%22CONSUL_VERSION%22%3A%221.19.0-dev%5Cn%22%2C%22CONSUL_BINARY_TYPE%22%3A%22oss%22%7D" />`

// installRun is one checkout (a copy of install.sh), cache and set of fakes.
type installRun struct {
	root, cache, log, stderr string
	env                      []string
	marker                   string // in every process's environment, to find leftovers
}

func newInstallRun(t *testing.T, goMode string, consulOnPath bool) *installRun {
	t.Helper()
	dir := t.TempDir()
	r := &installRun{root: filepath.Join(dir, "checkout"), cache: filepath.Join(dir, "cache"),
		log: filepath.Join(dir, "log"), stderr: filepath.Join(dir, "stderr"),
		marker: "QUORUMQ_INSTALL_TEST=" + dir}
	script, err := os.ReadFile("install.sh")
	if err != nil {
		t.Fatal(err)
	}
	pathDir, module := filepath.Join(dir, "path"), filepath.Join(dir, "module")
	files := map[string]string{
		filepath.Join(r.root, "consul", "install.sh"):                    string(script),
		filepath.Join(pathDir, "go"):                                     fakeGo,
		filepath.Join(dir, "consul"):                                     fakeConsul,
		filepath.Join(module, "agent", "uiserver", "dist", "index.html"): fakeUIPage,
		filepath.Join(r.log, "started"):                                  "",
	}
	if consulOnPath {
		files[filepath.Join(pathDir, "consul")] = fakeConsul
	}
	for p, body := range files {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// Only the tools the script uses, so that no go or consul of this machine is found (and
	// head, so that a `| head -1` coming back fails of SIGPIPE, as it did on a fresh machine).
	for _, tool := range []string{"bash", "dirname", "mkdir", "ln", "flock", "sed", "cp", "chmod",
		"mv", "rm", "mktemp", "sleep", "grep", "realpath", "touch", "head"} {
		p, err := exec.LookPath(tool)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(p, filepath.Join(pathDir, tool)); err != nil {
			t.Fatal(err)
		}
	}
	r.env = []string{"PATH=" + pathDir, "HOME=" + dir, "QUORUMQ_CACHE=" + r.cache,
		"QUORUMQ_PROGRESS_INTERVAL=0.2", "FAKE_GO=" + goMode, "FAKE_MODULE=" + module,
		"FAKE_LOG=" + r.log, "FAKE_STDERR=" + r.stderr, "FAKE_CONSUL=" + filepath.Join(dir, "consul"), r.marker}
	return r
}

// start runs install.sh in a process group of its own (a terminal's Ctrl-C reaches the
// whole group), with stderr in a file: a pipe would make Wait wait for leftover processes.
func (r *installRun) start(t *testing.T) *exec.Cmd {
	t.Helper()
	stderr, err := os.Create(r.stderr)
	if err != nil {
		t.Fatal(err)
	}
	defer stderr.Close()
	cmd := exec.Command("bash", filepath.Join(r.root, "consul", "install.sh"))
	cmd.Env, cmd.Stderr = r.env, stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd
}

func (r *installRun) run(t *testing.T) error {
	t.Helper()
	return r.start(t).Wait()
}

func (r *installRun) stderrText(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(r.stderr)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// linkedVersion is the first line bin/consul prints for `version`.
func (r *installRun) linkedVersion(t *testing.T) string {
	t.Helper()
	out, err := exec.Command(filepath.Join(r.root, "bin", "consul"), "version").Output()
	if err != nil {
		t.Fatalf("bin/consul version: %v\n%s", err, r.stderrText(t))
	}
	first, _, _ := strings.Cut(string(out), "\n")
	return first
}

// noLeftovers fails unless every process the script started is gone (a progress loop
// that outlives the script would keep printing into the user's terminal).
func (r *installRun) noLeftovers(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		left := processesWith(r.marker)
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("processes left after install.sh ended: %v", left)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// processesWith lists the live processes whose environment holds entry.
func processesWith(entry string) []string {
	dirs, _ := os.ReadDir("/proc")
	var out []string
	for _, d := range dirs {
		if _, err := strconv.Atoi(d.Name()); err != nil {
			continue
		}
		env, err := os.ReadFile(filepath.Join("/proc", d.Name(), "environ"))
		if err != nil || !bytes.Contains(env, append([]byte(entry), 0)) {
			continue
		}
		cmdline, _ := os.ReadFile(filepath.Join("/proc", d.Name(), "cmdline"))
		out = append(out, fmt.Sprintf("%s: %s", d.Name(), bytes.ReplaceAll(cmdline, []byte{0}, []byte{' '})))
	}
	return out
}

var progressLine = regexp.MustCompile(`(?m)^consul: still building \(\dm\d\ds elapsed\)$`)

func TestInstallBuildsWithProgress(t *testing.T) {
	t.Parallel()
	r := newInstallRun(t, "build", false)
	if err := r.run(t); err != nil {
		t.Fatalf("install.sh: %v\n%s", err, r.stderrText(t))
	}
	r.noLeftovers(t)
	stderr := r.stderrText(t)
	if !progressLine.MatchString(stderr) {
		t.Errorf("no progress line while building:\n%s", stderr)
	}
	if _, after, ok := strings.Cut(stderr, "consul: built v1.20.1 in "); !ok || progressLine.MatchString(after) {
		t.Errorf("want the built line last, with no progress after it:\n%s", stderr)
	}
	if got := r.linkedVersion(t); got != "Consul v1.20.1" {
		t.Errorf("bin/consul version = %q", got)
	}
	page, err := os.ReadFile(filepath.Join(r.log, "index.html"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(page), "%22CONSUL_VERSION%22%3A%221.20.1%22%2C") || strings.Contains(string(page), "1.19.0") {
		t.Errorf("the UI page built in does not give version 1.20.1:\n%s", page)
	}
	ldflags, err := os.ReadFile(filepath.Join(r.log, "ldflags"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(ldflags), "-X github.com/hashicorp/consul/version.GitCommit=920cc7c6") {
		t.Errorf("ldflags %q do not set the release commit", ldflags)
	}

	// The next run (a fresh clone on the same machine) only links the cached binary.
	r.env = append(r.env, "FAKE_GO=none")
	if err := os.Remove(filepath.Join(r.root, "bin", "consul")); err != nil {
		t.Fatal(err)
	}
	if err := r.run(t); err != nil {
		t.Fatalf("install.sh with the cache filled: %v\n%s", err, r.stderrText(t))
	}
	if got := r.linkedVersion(t); got != "Consul v1.20.1" {
		t.Errorf("bin/consul version from the cache = %q", got)
	}
}

// A consul of the pinned version on PATH is copied, not rebuilt, however its version
// output reaches the check.
func TestInstallTakesConsulFromPath(t *testing.T) {
	t.Parallel()
	r := newInstallRun(t, "none", true)
	if err := r.run(t); err != nil {
		t.Fatalf("install.sh: %v\n%s", err, r.stderrText(t))
	}
	if got := r.linkedVersion(t); got != "Consul v1.20.1" {
		t.Errorf("bin/consul version = %q", got)
	}
	target, err := filepath.EvalSymlinks(filepath.Join(r.root, "bin", "consul"))
	if err != nil || !strings.HasPrefix(target, r.cache+string(filepath.Separator)) {
		t.Errorf("bin/consul points at %q (%v), want a copy in the cache %s", target, err, r.cache)
	}
}

// A failed or interrupted build stops its progress lines, leaves no process behind and
// links nothing.
func TestInstallStopsProgressWhenBuildEnds(t *testing.T) {
	for _, c := range []struct {
		name, goMode string
		interrupt    bool
	}{
		{"build fails", "fail", false},
		{"ctrl-c while building", "block", true},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			r := newInstallRun(t, c.goMode, false)
			cmd := r.start(t)
			if c.interrupt {
				waitForFile(t, filepath.Join(r.log, "building"))
				if err := syscall.Kill(-cmd.Process.Pid, syscall.SIGINT); err != nil {
					t.Fatal(err)
				}
			}
			var exit *exec.ExitError
			if err := cmd.Wait(); !errors.As(err, &exit) {
				t.Fatalf("install.sh: %v, want a failure\n%s", err, r.stderrText(t))
			}
			r.noLeftovers(t)
			if stderr := r.stderrText(t); !progressLine.MatchString(stderr) {
				t.Errorf("no progress line while building:\n%s", stderr)
			}
			if _, err := os.Lstat(filepath.Join(r.root, "bin", "consul")); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("bin/consul after a failed build: %v", err)
			}
		})
	}
}

func waitForFile(t *testing.T, path string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := os.Stat(path); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not appear", path)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
