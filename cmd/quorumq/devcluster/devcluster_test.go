package devcluster_test

import (
	"context"
	"crypto/tls"
	"database/sql"
	"encoding/json"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/uptrace/bun/driver/pgdriver"

	"github.com/quorumq/quorumq/cmd/quorumq/devcluster"
	"github.com/quorumq/quorumq/cmd/quorumq/proctest"
	"github.com/quorumq/quorumq/internal/secure"
	"github.com/quorumq/quorumq/manager/managerapi"
)

// startDev runs `quorumq dev` with the given numbers of managers and brokers on free
// ports (with pprof, every server's Go profiles too) and returns it once it is ready,
// with the arguments that start it again on the same directory and ports.
func startDev(t *testing.T, managers, brokers int, pprof bool) (p *proctest.Proc, dir string, args []string) {
	t.Helper()
	dir = t.TempDir()
	servers := managers + brokers
	base := freeRange(t, 3*servers)
	port := func(offset int) string { return strconv.Itoa(base + offset) }
	args = []string{"dev", "--data-dir", dir,
		"--consul-http", proctest.FreeAddr(t), "--postgres-port", strconv.Itoa(proctest.FreePort(t)),
		"--managers", strconv.Itoa(managers), "--brokers", strconv.Itoa(brokers),
		"--manager-raft-port", port(0), "--manager-http-port", port(managers),
		"--broker-raft-port", port(2 * managers), "--broker-http-port", port(2*managers + brokers)}
	if pprof {
		args = append(args, "--pprof-port", port(2*servers))
	}
	p = proctest.Start(t, "dev", args...)
	p.WaitOutput(t, devcluster.ReadyLine, 3*time.Minute)
	return p, dir, args
}

// freeRange finds n consecutive free loopback ports below the kernel's ephemeral range
// (where no outgoing connection takes them meanwhile) and returns the first.
func freeRange(t *testing.T, n int) int {
	t.Helper()
	for range 100 {
		base := 20000 + rand.IntN(12000-n)
		free := true
		for i := range n {
			l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(base+i))
			if err != nil {
				free = false
				break
			}
			l.Close()
		}
		if free {
			return base
		}
	}
	t.Fatalf("no %d consecutive free ports found", n)
	return 0
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

// TestDevCluster runs the default cluster (3 managers, 5 brokers), uses it through a
// manager's REST API as curl would, and stops it all with SIGINT.
func TestDevCluster(t *testing.T) {
	p, dir, _ := startDev(t, 3, 5, false)
	st := readState(t, dir)
	pids := map[string]int{}
	byKind := map[string][]devcluster.Process{}
	for _, proc := range st.Processes {
		pids[proc.Name] = proc.Pid
		byKind[proc.Kind] = append(byKind[proc.Kind], proc)
		if !alive(proc.Pid) {
			t.Errorf("%s: pid %d not running", proc.Name, proc.Pid)
		}
	}
	if len(byKind["consul"]) != 1 || len(byKind["postgres"]) != 1 || len(byKind["manager"]) != 3 || len(byKind["broker"]) != 5 {
		t.Fatalf("cluster.json should list consul, postgres, 3 managers and 5 brokers: %+v", st)
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
	var dbs int
	if err := db.QueryRowContext(context.Background(), "select count(*) from pg_database where datname like 'quorumq_m%'").Scan(&dbs); err != nil {
		t.Fatalf("postgres at %s: %v", st.PostgresDSN, err)
	}
	if dbs != 3 {
		t.Errorf("%d manager databases, want one per manager", dbs)
	}
	db.Close()

	useThroughREST(t, st, byKind["manager"])
	checkLockedDown(t, p, st, dir)

	if err := p.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.Done():
	case <-time.After(2 * time.Minute):
		t.Fatal("dev did not exit within two minutes of SIGINT")
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

// useThroughREST checks that every manager names the same write manager, then creates a
// topic on one manager, produces through another and consumes through a third.
func useThroughREST(t *testing.T, st devcluster.State, managers []devcluster.Process) {
	t.Helper()
	writer := ""
	for _, m := range managers {
		var r managerapi.ManagersReply
		if code := rest(t, st, m, "GET", "/managers", "", &r); code != 200 || r.WriteManager == "" || len(r.Managers) != len(managers) {
			t.Fatalf("GET /managers on %s: %d %+v", m.Name, code, r)
		}
		if writer != "" && r.WriteManager != writer {
			t.Fatalf("%s names write manager %s, another manager %s", m.Name, r.WriteManager, writer)
		}
		writer = r.WriteManager
	}
	at := func(i int) devcluster.Process { return managers[i%len(managers)] }
	var tr managerapi.TopicReply
	if code := rest(t, st, at(0), "POST", "/topics", `{"name":"orders","partitions":2}`, &tr); code != 201 || len(tr.Topic.Partitions) != 2 {
		t.Fatalf("create topic: %d %+v", code, tr)
	}
	var pr managerapi.ProducerReply
	var cr managerapi.ConsumerReply
	if rest(t, st, at(1), "POST", "/producer/register", `{"topic":"orders"}`, &pr) != 200 ||
		rest(t, st, at(2), "POST", "/consumer/register", `{"topic":"orders"}`, &cr) != 200 {
		t.Fatal("register producer or consumer failed")
	}
	want := map[string]bool{}
	for i := range 4 {
		msg := "m" + strconv.Itoa(i)
		want[msg] = true
		body := `{"topic":"orders","producer_id":` + strconv.FormatUint(pr.ProducerID, 10) + `,"message":"` + msg + `"}`
		if code := rest(t, st, at(1), "POST", "/producer/produce", body, nil); code != 200 {
			t.Fatalf("produce %s: %d", msg, code)
		}
	}
	q := "?topic=orders&consumer_id=" + strconv.FormatUint(cr.ConsumerID, 10)
	var sz managerapi.SizeReply
	if code := rest(t, st, at(2), "GET", "/size"+q, "", &sz); code != 200 || sz.Size != 4 {
		t.Fatalf("size: %d %+v, want 4", code, sz)
	}
	for range 4 {
		var c managerapi.ConsumeReply
		if code := rest(t, st, at(2), "GET", "/consumer/consume"+q, "", &c); code != 200 || c.Message == nil || !want[*c.Message] {
			t.Fatalf("consume: %d %+v (left to see: %v)", code, c, want)
		}
		delete(want, *c.Message)
	}
}

// rest sends one request to a manager's REST API and decodes the reply into out.
func rest(t *testing.T, st devcluster.State, m devcluster.Process, method, path, body string, out any) int {
	t.Helper()
	// As the README's curl lines do: the token and the CA from cluster.json.
	if st.AdminToken == "" || st.CA == "" {
		t.Fatalf("cluster.json has no admin_token or ca: %+v", st)
	}
	req, err := http.NewRequest(method, "https://"+m.Addresses["http"]+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+st.AdminToken)
	resp, err := devClient(t, st).Do(req)
	if err != nil {
		t.Fatalf("%s %s on %s: %v", method, path, m.Name, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if out != nil && json.Unmarshal(raw, out) != nil {
		t.Fatalf("%s %s on %s: reply %q is not the JSON expected", method, path, m.Name, raw)
	}
	if resp.StatusCode >= 300 {
		t.Logf("%s %s on %s: %d %s", method, path, m.Name, resp.StatusCode, raw)
	}
	return resp.StatusCode
}

// TestDevChildrenDieWithIt: a SIGKILLed supervisor leaves no process behind, and a new
// one starts on the same directory and ports, with the data of the first.
func TestDevChildrenDieWithIt(t *testing.T) {
	p, dir, args := startDev(t, 1, 1, false)
	st := readState(t, dir)
	var m1 devcluster.Process
	for _, proc := range st.Processes {
		if proc.Name == "m1" {
			m1 = proc
		}
	}
	if code := rest(t, st, m1, "POST", "/topics", `{"name":"kept"}`, nil); code != 201 {
		t.Fatalf("create topic: %d", code)
	}
	p.Kill()
	for _, proc := range st.Processes {
		waitGone(t, proc.Name, proc.Pid)
	}
	again := proctest.Start(t, "dev-again", args...)
	again.WaitOutput(t, devcluster.ReadyLine, 3*time.Minute)
	if code := rest(t, st, m1, "GET", "/topics/kept", "", nil); code != 200 {
		t.Errorf("topic of the first run: %d", code)
	}
	if err := again.Stop(); err != nil {
		t.Fatal(err)
	}
}

// TestDevSupervises: cluster.json gives every process's command line; a SIGKILLed
// broker is started again by the supervisor (cluster.json shows its new pid) and rejoins;
// `quorumq dev kill` keeps it down until `quorumq dev restart`; SIGINT then stops the
// restarted process with the rest. With --pprof-port, m1 and then b1 serve their Go
// profiles from that port on.
func TestDevSupervises(t *testing.T) {
	dev, dir, args := startDev(t, 1, 1, true)
	procs := map[string]devcluster.Process{}
	for _, proc := range readState(t, dir).Processes {
		procs[proc.Name] = proc
	}
	pprofPort, _ := strconv.Atoi(args[slices.Index(args, "--pprof-port")+1])
	for i, name := range []string{"m1", "b1"} {
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(pprofPort+i))
		if got := procs[name].Addresses["pprof"]; got != addr {
			t.Fatalf("%s: pprof address %q in cluster.json, want %s", name, got, addr)
		}
		// The child starts serving its profiles in the background.
		deadline := time.Now().Add(30 * time.Second)
		for !profiled(addr) {
			if time.Now().After(deadline) {
				t.Fatalf("%s serves no Go profiles at %s; its log: %s", name, addr, procs[name].Log)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	for name, bin := range map[string]string{"consul": "consul", "postgres": "postgres", "m1": "quorumq", "b1": "quorumq"} {
		if cmd := procs[name].Cmd; len(cmd) < 2 || filepath.Base(cmd[0]) != bin {
			t.Errorf("%s: cmd %q, want %s with its arguments", name, cmd, bin)
		}
	}
	b1 := procs["b1"]
	if err := syscall.Kill(b1.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitGone(t, "b1", b1.Pid)
	b1 = waitBack(t, dir, procs["m1"], b1)

	run := func(args ...string) string {
		out, err := exec.Command(proctest.Binary(t), append(args, "--data-dir", dir)...).CombinedOutput()
		if err != nil {
			t.Fatalf("quorumq %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	if out := run("dev", "kill", "b1"); !strings.Contains(out, "held down") {
		t.Fatalf("dev kill b1 printed %q", out)
	}
	waitGone(t, "b1", b1.Pid)
	// Held: not restarted (the supervisor's first retry would come after a second).
	time.Sleep(3 * time.Second)
	if pid := stateOf(t, dir, "b1").Pid; pid != 0 {
		t.Fatalf("held b1 restarted (pid %d)", pid)
	}
	if out := run("dev", "restart", "b1"); !strings.Contains(out, "b1 restarted (pid") {
		t.Fatalf("dev restart b1 printed %q", out)
	}
	b1 = waitBack(t, dir, procs["m1"], b1)

	if err := dev.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if err := dev.Wait(); err != nil {
		t.Fatalf("dev after SIGINT: %v", err)
	}
	waitGone(t, "restarted b1", b1.Pid)
}

// profiled reports whether addr serves Go profiles.
func profiled(addr string) bool {
	resp, err := http.Get("http://" + addr + "/debug/pprof/cmdline")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

func stateOf(t *testing.T, dir, name string) devcluster.Process {
	t.Helper()
	for _, p := range readState(t, dir).Processes {
		if p.Name == name {
			return p
		}
	}
	t.Fatalf("no %s in cluster.json", name)
	return devcluster.Process{}
}

// waitBack waits until cluster.json shows broker b with a new pid that is alive and
// healthy, and manager m lists it alive; it returns b as it is now.
func waitBack(t *testing.T, dir string, m, b devcluster.Process) devcluster.Process {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		now := stateOf(t, dir, b.Name)
		st := readState(t, dir)
		if now.Pid != 0 && now.Pid != b.Pid && alive(now.Pid) && healthy(t, st, now) && aliveBrokers(t, st, m) == 1 {
			return now
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not back (cluster.json pid %d, was %d); its log: %s", b.Name, now.Pid, b.Pid, b.Log)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// aliveBrokers counts the brokers that manager m lists as alive.
func aliveBrokers(t *testing.T, st devcluster.State, m devcluster.Process) int {
	var r managerapi.BrokersReply
	if rest(t, st, m, "GET", "/brokers", "", &r) != http.StatusOK {
		return 0
	}
	return devcluster.CountAlive(r)
}

func healthy(t *testing.T, st devcluster.State, p devcluster.Process) bool {
	resp, err := devClient(t, st).Get("https://" + p.Addresses["http"] + "/healthz")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

func TestDevRefusesTakenPort(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	taken := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
	for _, flag := range []string{"--postgres-port", "--manager-http-port", "--pprof-port"} {
		t.Run(flag, func(t *testing.T) {
			base := strconv.Itoa(freeRange(t, 1))
			ports := map[string]string{"--postgres-port": strconv.Itoa(proctest.FreePort(t)), "--manager-raft-port": base, "--manager-http-port": base}
			ports[flag] = taken
			args := []string{"dev", "--data-dir", t.TempDir(), "--consul-http", proctest.FreeAddr(t), "--managers", "1", "--brokers", "0"}
			for f, p := range ports {
				args = append(args, f, p)
			}
			p := proctest.Start(t, "dev", args...)
			if err := p.Wait(); err == nil {
				t.Fatal("want a failing exit")
			}
			if !strings.Contains(p.Output(), flag) {
				t.Fatalf("the error should name the flag to change:\n%s", p.Output())
			}
		})
	}
}

// devClient trusts the CA that cluster.json names.
func devClient(t *testing.T, st devcluster.State) *http.Client {
	t.Helper()
	pool, err := secure.LoadPool(st.CA)
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
}
