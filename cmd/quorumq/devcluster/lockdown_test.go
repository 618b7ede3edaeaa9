package devcluster_test

import (
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/quorumq/quorumq/cmd/quorumq/devcluster"
	"github.com/quorumq/quorumq/cmd/quorumq/proctest"
)

// checkLockedDown runs against a ready dev cluster that has a topic "orders": no
// process of the cluster shows a secret on its command line (ps shows every user's);
// Consul refuses the anonymous token; the UI's token (the file cluster.json names)
// manages Consul; the CLI finds the managers through Consul with cluster.json's
// read-only token; cluster.json and the token files are the owner's only.
func checkLockedDown(t *testing.T, dev *proctest.Proc, st devcluster.State, dir string) {
	t.Helper()
	secrets := map[string]string{"admin token": st.AdminToken, "consul_token": st.ConsulToken}
	pw, err := os.ReadFile(filepath.Join(dir, "postgres.password"))
	if err != nil || strings.TrimSpace(string(pw)) == "" {
		t.Fatalf("the dev PostgreSQL's password file: %v", err)
	}
	secrets["postgres password"] = strings.TrimSpace(string(pw))
	tokenFiles, _ := filepath.Glob(filepath.Join(dir, "consul", "acl", "*.token"))
	if len(tokenFiles) < 4 { // management, reader, manager, broker
		t.Fatalf("token files %v, want management, reader and one per service", tokenFiles)
	}
	for _, f := range append(tokenFiles, devcluster.StatePath(dir), filepath.Join(dir, "consul", "acl", "acl.hcl")) {
		if st, err := os.Stat(f); err != nil || st.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v, want mode 0600", f, err)
		}
		if strings.HasSuffix(f, ".token") {
			b, _ := os.ReadFile(f)
			secrets[filepath.Base(f)] = strings.TrimSpace(string(b))
		}
	}
	procs := descendants(dev.Pid())
	if len(procs) < len(st.Processes) {
		t.Fatalf("found %d processes under quorumq dev, cluster.json lists %d", len(procs), len(st.Processes))
	}
	for pid, cmdline := range procs {
		for what, secret := range secrets {
			if secret != "" && strings.Contains(cmdline, secret) {
				t.Errorf("pid %d shows the %s in its command line: %q", pid, what, cmdline)
			}
		}
	}

	consulAt := "http://" + st.ConsulHTTP
	uiToken, err := os.ReadFile(st.ConsulUITokenFile)
	if err != nil {
		t.Fatalf("consul_ui_token_file: %v", err)
	}
	for _, c := range []struct {
		name, token, method, path, body string
		want                            int
	}{
		{"anonymous registers a broker", "", "PUT", "/v1/agent/service/register", `{"ID":"quorumq-broker-evil","Name":"quorumq-broker","Port":1}`, 403},
		{"anonymous deregisters a broker", "", "PUT", "/v1/agent/service/deregister/quorumq-broker-b1", "", 403},
		{"anonymous writes KV", "", "PUT", "/v1/kv/x", "v", 403},
		{"the UI token writes KV", strings.TrimSpace(string(uiToken)), "PUT", "/v1/kv/x", "v", 200},
		{"anonymous reads KV", "", "GET", "/v1/kv/x", "", 403},
		{"the CLI's token registers", st.ConsulToken, "PUT", "/v1/agent/service/register", `{"ID":"quorumq-manager-evil","Name":"quorumq-manager","Port":1}`, 403},
	} {
		req, _ := http.NewRequest(c.method, consulAt+c.path, strings.NewReader(c.body))
		if c.token != "" {
			req.Header.Set("X-Consul-Token", c.token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		resp.Body.Close()
		if resp.StatusCode != c.want {
			t.Errorf("%s: %s, want %d", c.name, resp.Status, c.want)
		}
	}

	// The CLI's default way to the managers: Consul, with the token of cluster.json.
	cli := proctest.Start(t, "topic-list", "topic", "list", "--data-dir", dir, "--consul", st.ConsulHTTP,
		"--token", st.AdminToken, "--ca", st.CA, "--timeout", "60s")
	select {
	case <-cli.Done():
	case <-time.After(90 * time.Second):
		t.Fatal("topic list did not finish")
	}
	if err := cli.Wait(); err != nil || !strings.Contains(cli.Output(), "orders") {
		t.Errorf("topic list through Consul: %v\n%s", err, cli.Output())
	}
}

// descendants maps every process below pid to its command line (arguments joined by
// spaces).
func descendants(pid int) map[int]string {
	parent := map[int]int{}
	cmdlines := map[int]string{}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		cmd, err2 := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || err2 != nil {
			continue // gone meanwhile
		}
		s := string(stat)
		fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(fields) > 1 {
			parent[p], _ = strconv.Atoi(fields[1])
		}
		cmdlines[p] = strings.ReplaceAll(string(cmd), "\x00", " ")
	}
	out := map[int]string{}
	for p := range cmdlines {
		for q := parent[p]; q > 1; q = parent[q] {
			if q == pid {
				out[p] = cmdlines[p]
				break
			}
		}
	}
	return out
}
