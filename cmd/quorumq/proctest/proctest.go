// Package proctest runs the real quorumq binary in tests: one build per test process,
// each child's output captured and shown when the test fails, every child killed when
// the test ends.
package proctest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/quorumq/quorumq/internal/devtools/consulagent"

	"github.com/quorumq/quorumq/internal/freeport"
)

// Proc is a running (or finished) child process.
type Proc struct {
	Name  string
	Stdin io.WriteCloser

	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{}
	err  error // valid after done is closed
}

// Opts configures StartOpts; Start covers the common case.
type Opts struct {
	Name string   // label in logs, e.g. "atm1"
	Args []string // quorumq arguments
	Env  []string // added to the test's environment ("KEY=value")
	Dir  string   // working directory; empty = the test's
	// Stdin, if set, is the child's stdin (a terminal, say); Proc.Stdin is then nil.
	Stdin *os.File
}

// Start runs `quorumq args...` labelled name.
func Start(t testing.TB, name string, args ...string) *Proc {
	t.Helper()
	return StartOpts(t, Opts{Name: name, Args: args})
}

// StartOpts runs the quorumq binary as opts says. The child runs in its own process
// group, so the cleanup also kills whatever it started (agents, servers) if it could not.
func StartOpts(t testing.TB, opts Opts) *Proc {
	t.Helper()
	args, env := secureArgs(t, opts.Args)
	cmd := exec.Command(Binary(t), args...)
	cmd.Env = append(append(os.Environ(), env...), opts.Env...)
	cmd.Dir = opts.Dir
	p := &Proc{Name: opts.Name, cmd: cmd, out: &syncBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.out, p.out
	// Pdeathsig: a test binary that dies on its -timeout runs no cleanup; its children
	// must not outlive it holding ports.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	// A grandchild that outlives the child keeps the output pipe open; do not let that
	// hold up Wait.
	cmd.WaitDelay = 3 * time.Second
	if opts.Stdin != nil {
		cmd.Stdin = opts.Stdin
	} else {
		stdin, err := cmd.StdinPipe()
		if err != nil {
			t.Fatalf("proctest %s: %v", opts.Name, err)
		}
		p.Stdin = stdin
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("proctest %s: start: %v", opts.Name, err)
	}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.Kill()
		// Leftover grandchildren share the child's process group.
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		if t.Failed() {
			t.Logf("--- output of %s (quorumq %s):\n%s", p.Name, strings.Join(opts.Args, " "), p.Output())
		}
	})
	return p
}

// Pid is the child's process id.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Output is everything the child wrote to stdout and stderr so far.
func (p *Proc) Output() string { return p.out.String() }

// Done is closed when the child has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Wait blocks until the child exits and returns its exit error (nil for status 0).
func (p *Proc) Wait() error {
	<-p.done
	return p.err
}

// Signal sends sig to the child (not to its group).
func (p *Proc) Signal(sig syscall.Signal) error {
	select {
	case <-p.done:
		return os.ErrProcessDone
	default:
	}
	return p.cmd.Process.Signal(sig)
}

// Kill ends the child with SIGKILL (a crash: no cleanup runs) and waits until it is gone.
func (p *Proc) Kill() {
	_ = p.Signal(syscall.SIGKILL)
	<-p.done
}

// Stop asks the child to shut down (SIGTERM), waits up to 10 s, then kills it. It returns
// the exit error: nil when the child exited with status 0.
func (p *Proc) Stop() error {
	_ = p.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return p.err
	case <-time.After(10 * time.Second):
		p.Kill()
		return fmt.Errorf("proctest %s: no exit within 10s of SIGTERM; killed", p.Name)
	}
}

// WaitOutput waits until the child's output contains substr, failing the test when the
// timeout passes or the child exits first.
func (p *Proc) WaitOutput(t testing.TB, substr string, timeout time.Duration) {
	t.Helper()
	deadline := time.After(timeout)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if strings.Contains(p.Output(), substr) {
			return
		}
		select {
		case <-p.done:
			if strings.Contains(p.Output(), substr) {
				return
			}
			t.Fatalf("proctest %s exited (%v) before printing %q", p.Name, p.err, substr)
		case <-deadline:
			t.Fatalf("proctest %s: %q not printed within %v", p.Name, substr, timeout)
		case <-tick.C:
		}
	}
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	port, err := freeport.TCP(false)
	if err != nil {
		t.Fatalf("proctest: %v", err)
	}
	return port
}

// FreeAddr returns "127.0.0.1:PORT" for a port that was free a moment ago.
func FreeAddr(t testing.TB) string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(FreePort(t)))
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// Binary builds ./cmd/quorumq once per test process and returns the binary's path.
// The build lives in a temp directory named after this process; directories left by
// earlier test processes that have exited are removed here, since Go has no exit hook.
func Binary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() { binPath, buildErr = build() })
	if buildErr != nil {
		t.Fatalf("proctest: %v", buildErr)
	}
	return binPath
}

const dirPrefix = "quorumq-proctest-"

func build() (string, error) {
	root, err := consulagent.ModuleRoot()
	if err != nil {
		return "", err
	}
	removeStaleBuilds()
	dir := filepath.Join(os.TempDir(), dirPrefix+strconv.Itoa(os.Getpid()))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "quorumq")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/quorumq")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "GOTOOLCHAIN=local")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/quorumq: %v\n%s", err, out)
	}
	return bin, nil
}

func removeStaleBuilds() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), dirPrefix+"*"))
	for _, d := range dirs {
		pid, err := strconv.Atoi(strings.TrimPrefix(filepath.Base(d), dirPrefix))
		if err != nil || pid == os.Getpid() {
			continue
		}
		// Signal 0 probes for existence; ESRCH means the process is gone.
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			_ = os.RemoveAll(d)
		}
	}
}
