package atm_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/quorumq/quorumq/atm"
	"github.com/quorumq/quorumq/cmd/quorumq/proctest"
)

// atmProc is one `quorumq atm` process and the arguments to restart it with.
type atmProc struct {
	id, raft, http string
	args           []string
	p              *proctest.Proc
	answered       int          // answer lines already consumed by say
	hc             *http.Client // TLS and the admin token of the secured ATMs
}

// startATMs starts n ATMs on free ports with a static peer list (no Consul), each with
// its own data dir, and waits until all have printed their ready line.
func startATMs(t *testing.T, n int, extra ...string) []*atmProc {
	t.Helper()
	procs := newATMs(t, n, 1)
	var peers []string
	for _, a := range procs {
		peers = append(peers, a.id+"="+a.raft)
	}
	for _, a := range procs {
		a.args = append(a.args, "--peers", strings.Join(peers, ","))
		a.args = append(a.args, extra...)
	}
	return startAll(t, procs)
}

// newATMs prepares n ATMs numbered from first, on free ports, each with its own data dir.
func newATMs(t *testing.T, n, first int) []*atmProc {
	t.Helper()
	dir := t.TempDir()
	procs := make([]*atmProc, n)
	for i := range procs {
		id := fmt.Sprintf("atm%d", first+i)
		a := &atmProc{id: id, raft: proctest.FreeAddr(t), http: proctest.FreeAddr(t), hc: proctest.HTTPClient(t)}
		a.args = []string{"atm", "--id", id, "--data-dir", filepath.Join(dir, id), "--raft", a.raft, "--http", a.http}
		procs[i] = a
	}
	return procs
}

func startAll(t *testing.T, procs []*atmProc) []*atmProc {
	t.Helper()
	for _, a := range procs {
		a.start(t)
	}
	for _, a := range procs {
		a.waitReady(t)
	}
	return procs
}

func (a *atmProc) start(t *testing.T) {
	t.Helper()
	a.p = proctest.Start(t, a.id, a.args...)
	a.answered = 0
}

func (a *atmProc) waitReady(t *testing.T) {
	t.Helper()
	a.p.WaitOutput(t, "ready id="+a.id, 60*time.Second)
}

// answers are the lines the ATM printed on stdout: everything but slog's lines (stdout
// and stderr share one buffer in proctest).
func (a *atmProc) answers() []string {
	var out []string
	for _, l := range strings.Split(a.p.Output(), "\n") {
		if l != "" && !strings.HasPrefix(l, "time=") {
			out = append(out, l)
		}
	}
	return out
}

// say types one command and returns its one-line answer.
func (a *atmProc) say(t *testing.T, cmd string) string {
	t.Helper()
	return a.sayN(t, cmd, 1)[0]
}

// sayN types one command and returns the next n answer lines.
func (a *atmProc) sayN(t *testing.T, cmd string, n int) []string {
	t.Helper()
	if a.answered == 0 {
		a.answered = len(a.answers()) // skip the ready line
	}
	if _, err := io.WriteString(a.p.Stdin, cmd+"\n"); err != nil {
		t.Fatalf("%s: write %q: %v", a.id, cmd, err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if ans := a.answers(); len(ans) >= a.answered+n {
			got := ans[a.answered : a.answered+n]
			a.answered += n
			return got
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s: no %d-line answer to %q within 30s; output:\n%s", a.id, n, cmd, a.p.Output())
	return nil
}

// expect types cmd and fails unless the answer is want.
func (a *atmProc) expect(t *testing.T, cmd, want string) {
	t.Helper()
	if got := a.say(t, cmd); got != want {
		t.Fatalf("%s: %q answered %q, want %q", a.id, cmd, got, want)
	}
}

func (a *atmProc) client() *atm.Client { return atm.NewClient(proctest.URL(a.http, ""), a.hc) }

// leaderOf asks the live ATMs who leads, until one names a live ATM.
func leaderOf(t *testing.T, procs []*atmProc) *atmProc {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		for _, a := range procs {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			st, err := a.client().Status(ctx)
			cancel()
			if err != nil {
				continue
			}
			for _, b := range procs {
				if b.id == st.Leader && st.State == "leader" && b.id == st.ID {
					return b
				}
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatal("no leader within 60s")
	return nil
}

// waitNewLeader waits until a live ATM other than old reports leading.
func waitNewLeader(t *testing.T, procs []*atmProc, old *atmProc) *atmProc {
	t.Helper()
	return leaderOf(t, without(procs, old))
}

// without returns procs but x.
func without(procs []*atmProc, x *atmProc) []*atmProc {
	var out []*atmProc
	for _, a := range procs {
		if a != x {
			out = append(out, a)
		}
	}
	return out
}
