package compose

import (
	"context"
	"net/url"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/quorumq/quorumq/internal/devtools/consulagent"
)

// The issue asks for exactly this topology.
const (
	wantManagers = 3
	wantBrokers  = 5
)

// TestComposeFile checks docker-compose.yml against the image and itself: Consul with
// the UI on a config Consul accepts, PostgreSQL, 3 managers and 5 brokers whose commands
// the image's binary accepts and whose addresses, volumes, DSNs and dependencies name
// what the file defines.
func TestComposeFile(t *testing.T) {
	cf := loadCompose(t)
	root := moduleRoot(t)

	cs, ok := cf.Services["consul"]
	if !ok {
		t.Fatal("no consul service")
	}
	checkConsulService(t, root, cs)
	pg, ok := cf.Services["postgres"]
	if !ok {
		t.Fatal("no postgres service")
	}
	if !strings.HasPrefix(pg.Image, "postgres:") || pg.Environment["POSTGRES_PASSWORD"] != "" ||
		pg.Environment["POSTGRES_PASSWORD_FILE"] == "" || pg.Environment["POSTGRES_HOST_AUTH_METHOD"] != "scram-sha-256" || pg.Healthcheck == nil {
		t.Errorf("postgres: want image postgres:N, scram-sha-256, the password from a file (not in compose) and a healthcheck, got %+v", pg)
	}

	by := cf.quorumqServices()
	if len(by["manager"]) != wantManagers || len(by["broker"]) != wantBrokers {
		t.Errorf("want %d managers and %d brokers built from the Dockerfile, got %v", wantManagers, wantBrokers, by)
	}
	img := buildImage(t)
	_, final := loadDockerfile(t)
	bin := img.files[final.find("ENTRYPOINT")[0].Args[0]]
	ids := map[string]string{}
	databases := map[string]string{}
	for sub, names := range by {
		if sub != "manager" && sub != "broker" {
			continue // the init service: checkSecrets
		}
		for _, name := range names {
			s := cf.Services[name]
			t.Run(name, func(t *testing.T) {
				checkAcceptedByBinary(t, bin, s.Command)
				checkQuorumqService(t, cf, name, s)
				id, _ := s.flag("id")
				if other, dup := ids[id]; dup {
					t.Errorf("--id %s is also %s's", id, other)
				}
				ids[id] = name
				if sub != "manager" {
					return
				}
				if n, _ := s.flag("bootstrap-expect"); n != strconv.Itoa(len(by["manager"])) {
					t.Errorf("--bootstrap-expect %s, but the file has %d managers", n, len(by["manager"]))
				}
				db := checkDSN(t, cf, s)
				if other, dup := databases[db]; dup {
					t.Errorf("database %s is also %s's: each manager materialises its own state", db, other)
				}
				databases[db] = name
			})
		}
	}
	checkSecrets(t, cf, img, bin)
}

func checkConsulService(t *testing.T, root string, cs service) {
	t.Helper()
	install, err := os.ReadFile(filepath.Join(root, "consul", "install.sh"))
	if err != nil {
		t.Fatal(err)
	}
	if m := regexp.MustCompile(`CONSUL_VERSION:-v([0-9.]+)`).FindSubmatch(install); m == nil ||
		cs.Image != "hashicorp/consul:"+string(m[1]) {
		t.Errorf("consul image %s: want the version consul/install.sh pins for the tests", cs.Image)
	}
	if cs.Healthcheck == nil || !hasPort(cs.Ports, "8500", "8500") {
		t.Errorf("consul: want a healthcheck and the UI/API published on %s8500:8500", publish)
	}
	var config string
	for i, a := range cs.Command {
		if a == "-config-file" && i+1 < len(cs.Command) && config == "" {
			config = cs.Command[i+1]
		}
	}
	src, ok := cs.volumeAt(config)
	if config == "" || !ok || !strings.HasPrefix(src, "./") {
		t.Fatalf("consul: want -config-file naming a file mounted from the checkout, got command %v volumes %v", cs.Command, cs.Volumes)
	}
	file := filepath.Join(root, filepath.FromSlash(src))
	hcl, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`ui_config\s*\{[^}]*enabled\s*=\s*true`).Match(hcl) {
		t.Errorf("%s does not enable the UI (ui_config { enabled = true })", src)
	}
	if !regexp.MustCompile(`acl\s*\{[^}]*enabled\s*=\s*true[^}]*default_policy\s*=\s*"deny"`).Match(hcl) {
		t.Errorf("%s does not enable ACLs with default_policy deny", src)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	consulBin, err := consulagent.EnsureBin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if out, err := exec.CommandContext(ctx, consulBin, "validate", file).CombinedOutput(); err != nil {
		t.Errorf("consul validate %s: %v\n%s", src, err, out)
	}
}

// publish is how every published port starts: loopback unless the user opts in.
const publish = "${QUORUMQ_PUBLISH:-127.0.0.1}:"

func hasPort(ports []string, host, container string) bool {
	for _, p := range ports {
		if p == publish+host+":"+container {
			return true
		}
	}
	return false
}

// checkAcceptedByBinary asks the binary for the command's help with the command's own
// flags: cobra parses every flag (name, type, value) before it answers --help, and names
// the subcommand it found in the usage line.
func checkAcceptedByBinary(t *testing.T, bin string, command []string) {
	t.Helper()
	out, err := asNonroot(exec.Command(bin, append(command, "--help")...)).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "quorumq "+command[0]+" [flags]") {
		t.Errorf("quorumq %s --help: %v: the image's binary does not accept this command:\n%s",
			strings.Join(command, " "), err, out)
	}
}

func checkQuorumqService(t *testing.T, cf composeFile, name string, s service) {
	t.Helper()
	if s.Build.Context != "." || (s.Build.Dockerfile != "" && s.Build.Dockerfile != "Dockerfile") {
		t.Errorf("build %+v: want the checkout's Dockerfile", s.Build)
	}
	if s.Hostname != "" && s.Hostname != name {
		t.Errorf("hostname %s differs from the service name, the name other containers resolve", s.Hostname)
	}
	// Each process registers its --raft/--http addresses in Consul for the others to
	// dial, so they must name this service, which compose's DNS resolves.
	listens := map[string]bool{}
	for _, f := range []string{"raft", "http"} {
		v, _ := s.flag(f)
		host, port, err := hostPort(v)
		if err != nil || host != name {
			t.Errorf("--%s %q: want %s:PORT", f, v, name)
		}
		listens[port] = true
	}
	for _, p := range s.Ports {
		parts := strings.Split(p, ":")
		if !listens[parts[len(parts)-1]] {
			t.Errorf("port %s publishes a port the service does not listen on", p)
		}
		if !strings.HasPrefix(p, publish) {
			t.Errorf("port %s: want it published on %s (loopback unless QUORUMQ_PUBLISH says otherwise)", p, publish)
		}
	}
	// The image's /data is owned by nonroot; only a named volume starts as a copy of it.
	dir, _ := s.flag("data-dir")
	vol, ok := s.volumeAt(dir)
	if _, declared := cf.Volumes[vol]; dir != "/data" || !ok || !declared {
		t.Errorf("--data-dir %q with volumes %v: want /data (the image's VOLUME) on a named volume", dir, s.Volumes)
	}
	at, _ := s.flag("consul")
	host, port, err := hostPort(at)
	if cs, ok := cf.Services[host]; err != nil || !ok || !strings.HasPrefix(cs.Image, "hashicorp/consul:") || port != "8500" {
		t.Errorf("--consul %q: want the consul service's API, consul:8500", at)
	}
	// consul-acl has made the service's Consul token (after Consul was healthy).
	need := map[string]string{"consul-acl": "service_completed_successfully"}
	if s.subcommand() == "manager" {
		need["postgres"] = "service_healthy"
	}
	for d, cond := range need {
		if s.DependsOn[d].Condition != cond {
			t.Errorf("depends_on: want %s with condition %s, got %+v", d, cond, s.DependsOn)
		}
	}
}

// checkDSN checks a manager's --postgres against the postgres service and returns the
// database it names.
func checkDSN(t *testing.T, cf composeFile, s service) string {
	t.Helper()
	dsn, _ := s.flag("postgres")
	u, err := url.Parse(dsn)
	if err != nil {
		t.Errorf("--postgres %q: %v", dsn, err)
		return ""
	}
	pg := cf.Services[u.Hostname()]
	user := pg.Environment["POSTGRES_USER"]
	if user == "" {
		user = "postgres"
	}
	_, hasPass := u.User.Password()
	if !strings.HasPrefix(pg.Image, "postgres:") || u.Port() != "5432" || u.User.Username() != user || hasPass {
		t.Errorf("--postgres %q: want postgres://%s@postgres:5432/DB (the password comes from a file)", dsn, user)
	}
	if s.Environment["QUORUMQ_POSTGRES_PASSWORD_FILE"] != pg.Environment["POSTGRES_PASSWORD_FILE"] {
		t.Errorf("QUORUMQ_POSTGRES_PASSWORD_FILE %q: want postgres's POSTGRES_PASSWORD_FILE %q",
			s.Environment["QUORUMQ_POSTGRES_PASSWORD_FILE"], pg.Environment["POSTGRES_PASSWORD_FILE"])
	}
	db := path.Base(u.Path)
	if db == "" || db == "/" || db == "." {
		t.Errorf("--postgres %q names no database", dsn)
	}
	return db
}
