package compose

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/quorumq/quorumq/internal/secure"
)

// checkSecrets runs the init service's command with the image's binary (as nonroot,
// its volume a fresh directory) and checks that every file the other services are
// pointed at is among what it made: each process's certificate for its own role/id,
// the tokens file, the Consul tokens and ACL config, the PostgreSQL password. And that
// no secret is written in the file itself.
func checkSecrets(t *testing.T, cf composeFile, img builtImage, bin string) {
	t.Helper()
	initSvc, ok := cf.Services["init"]
	if !ok || initSvc.subcommand() != "cert" || len(initSvc.Command) < 2 || initSvc.Command[1] != "init" {
		t.Fatalf("want an init service running `quorumq cert init`, got %+v", initSvc)
	}
	target, _ := initSvc.flag("dir")
	vol, ok := initSvc.volumeAt(target)
	if !ok {
		t.Fatalf("init: --dir %s is not a volume", target)
	}
	dir := volumeDir(t, img)
	args := slices.Clone(initSvc.Command)
	args[slices.Index(args, target)] = dir
	if out, err := asNonroot(exec.Command(bin, args...)).CombinedOutput(); err != nil {
		t.Fatalf("quorumq %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	// Again, as on every `compose up`: what exists stays.
	ca, _ := os.ReadFile(filepath.Join(dir, secure.CAFile))
	if out, err := asNonroot(exec.Command(bin, args...)).CombinedOutput(); err != nil {
		t.Fatalf("second run: %v\n%s", err, out)
	}
	if again, _ := os.ReadFile(filepath.Join(dir, secure.CAFile)); string(again) != string(ca) {
		t.Error("a second cert init replaced the CA")
	}

	// inSecrets maps a path inside a service's mount of the secrets volume to dir.
	inSecrets := func(name string, s service, p string) string {
		for _, v := range s.Volumes {
			parts := strings.Split(v, ":")
			if len(parts) >= 2 && parts[0] == vol {
				if rel, ok := strings.CutPrefix(p, parts[1]+"/"); ok {
					return filepath.Join(dir, rel)
				}
			}
		}
		t.Errorf("%s: %s is not in its mount of the %s volume", name, p, vol)
		return ""
	}
	exists := func(name string, s service, p string) string {
		f := inSecrets(name, s, p)
		if _, err := os.Stat(f); f != "" && err != nil {
			t.Errorf("%s: %s: cert init made no such file", name, p)
		}
		return f
	}
	for sub, names := range cf.quorumqServices() {
		if sub != secure.RoleManager && sub != secure.RoleBroker {
			continue
		}
		for _, name := range names {
			s := cf.Services[name]
			id, _ := s.flag("id")
			env := s.Environment
			node, err := secure.LoadNode(exists(name, s, env["QUORUMQ_CA"]), exists(name, s, env["QUORUMQ_CERT"]), exists(name, s, env["QUORUMQ_KEY"]))
			if err != nil {
				t.Errorf("%s: %v", name, err)
			} else if want := (secure.Identity{Role: sub, ID: id}); node.Identity != want {
				t.Errorf("%s: QUORUMQ_CERT names %s, want %s", name, node.Identity, want)
			}
			exists(name, s, env["QUORUMQ_TOKENS"])
			exists(name, s, env["CONSUL_HTTP_TOKEN_FILE"])
			if sub == secure.RoleManager {
				exists(name, s, env["QUORUMQ_POSTGRES_PASSWORD_FILE"])
			}
		}
	}
	for _, name := range []string{"consul", "consul-acl", "postgres"} {
		s := cf.Services[name]
		for k, v := range s.Environment {
			if strings.HasSuffix(k, "_FILE") {
				exists(name, s, v)
			}
		}
	}
	for i, a := range cf.Services["consul"].Command {
		if a == "-config-file" && strings.HasPrefix(cf.Services["consul"].Command[i+1], "/secrets/") {
			exists("consul", cf.Services["consul"], cf.Services["consul"].Command[i+1])
		}
	}
	raw, err := os.ReadFile(filepath.Join(moduleRoot(t), "docker-compose.yml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"admin-token", "postgres-password", "consul/management.token", "consul/manager.token"} {
		secret, _ := os.ReadFile(filepath.Join(dir, f))
		if len(secret) == 0 || strings.Contains(string(raw), strings.TrimSpace(string(secret))) {
			t.Errorf("%s: empty, or written in docker-compose.yml", f)
		}
	}
	if strings.Contains(string(raw), "POSTGRES_PASSWORD:") {
		t.Error("docker-compose.yml sets POSTGRES_PASSWORD: the password must come from the secrets volume")
	}
}
