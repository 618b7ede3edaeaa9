package devcluster_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/uptrace/bun/driver/pgdriver"

	"github.com/quorumq/quorumq/cmd/quorumq/devcluster"
	"github.com/quorumq/quorumq/cmd/quorumq/proctest"
)

// startDev runs `quorumq dev` on free ports and returns it once it is ready, with the
// arguments that start it again on the same directory and ports.
func startDev(t *testing.T) (p *proctest.Proc, dir string, args []string) {
	t.Helper()
	dir = t.TempDir()
	args = []string{"dev", "--data-dir", dir,
		"--consul-http", proctest.FreeAddr(t), "--postgres-port", strconv.Itoa(proctest.FreePort(t))}
	p = proctest.Start(t, "dev", args...)
	p.WaitOutput(t, devcluster.ReadyLine, 2*time.Minute)
	return p, dir, args
}

func readState(t *testing.T, dir string) devcluster.State {
	t.Helper()
	b, err := os.ReadFile(devcluster.StatePath(dir))
	if err != nil {
		t.Fatal(err)
	}
	var st devcluster.State
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatalf("cluster.json: %v\n%s", err, b)
	}
	return st
}

// alive reports whether pid is a running process (a zombie counts as gone: in a
// container nobody may reap an orphan).
func alive(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

func waitGone(t *testing.T, name string, pid int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for alive(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("%s (pid %d) still running", name, pid)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestDevRunsConsulAndPostgresAndStopsOnSIGINT(t *testing.T) {
	p, dir, _ := startDev(t)
	st := readState(t, dir)
	pids := map[string]int{}
	for _, proc := range st.Processes {
		pids[proc.Kind] = proc.Pid
		if !alive(proc.Pid) {
			t.Errorf("%s: pid %d not running", proc.Name, proc.Pid)
		}
	}
	if pids["consul"] == 0 || pids["postgres"] == 0 {
		t.Fatalf("cluster.json lacks consul or postgres: %+v", st)
	}
	if !strings.Contains(p.Output(), st.ConsulUI) {
		t.Errorf("output does not show the Consul UI URL %s", st.ConsulUI)
	}

	resp, err := http.Get(st.ConsulUI + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s/: %s", st.ConsulUI, resp.Status)
	}

	db := sql.OpenDB(pgdriver.NewConnector(pgdriver.WithDSN(st.PostgresDSN)))
	defer db.Close()
	var one int
	if err := db.QueryRowContext(context.Background(), "select 1").Scan(&one); err != nil {
		t.Fatalf("postgres at %s: %v", st.PostgresDSN, err)
	}
	db.Close()

	if err := p.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.Done():
	case <-time.After(time.Minute):
		t.Fatal("dev did not exit within a minute of SIGINT")
	}
	if err := p.Wait(); err != nil {
		t.Fatalf("exit: %v", err)
	}
	for name, pid := range pids {
		if alive(pid) {
			t.Errorf("%s (pid %d) outlived dev", name, pid)
		}
	}
	for _, proc := range readState(t, dir).Processes {
		if proc.Pid != 0 {
			t.Errorf("cluster.json still lists pid %d for %s after stop", proc.Pid, proc.Name)
		}
	}
	if _, err := os.Stat(dir + "/postgres/PG_VERSION"); err != nil {
		t.Errorf("postgres data removed: %v", err)
	}
}

// TestDevChildrenDieWithIt: a SIGKILLed supervisor leaves no agent or database behind,
// and a new one starts on the same directory and ports.
func TestDevChildrenDieWithIt(t *testing.T) {
	p, dir, args := startDev(t)
	st := readState(t, dir)
	p.Kill()
	for _, proc := range st.Processes {
		waitGone(t, proc.Name, proc.Pid)
	}
	again := proctest.Start(t, "dev-again", args...)
	again.WaitOutput(t, devcluster.ReadyLine, 2*time.Minute)
	if err := again.Stop(); err != nil {
		t.Fatal(err)
	}
}

func TestDevRefusesTakenPort(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
	p := proctest.Start(t, "dev", "dev", "--data-dir", t.TempDir(),
		"--consul-http", proctest.FreeAddr(t), "--postgres-port", port)
	if err := p.Wait(); err == nil {
		t.Fatal("want a failing exit")
	}
	if !strings.Contains(p.Output(), "--postgres-port") {
		t.Fatalf("the error should name the flag to change:\n%s", p.Output())
	}
}
