package compose

import (
	"cmp"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestComposeIsSecured reads docker-compose.yml (no Docker engine here to run it) and
// checks the trust boundary it sets up: ports on loopback unless QUORUMQ_PUBLISH says
// otherwise, Consul with ACLs that deny by default and a token per quorumq service, no
// secret in the file (they come from the secrets volume that `quorumq cert init` fills),
// TLS and tokens on every quorumq process, and no --insecure anywhere.
func TestComposeIsSecured(t *testing.T) {
	cf := loadCompose(t)
	root := moduleRoot(t)
	raw, err := os.ReadFile(filepath.Join(root, "docker-compose.yml"))
	if err != nil {
		t.Fatal(err)
	}
	for name, s := range cf.Services {
		t.Run(name, func(t *testing.T) {
			for _, p := range s.Ports {
				if !strings.HasPrefix(p, publish) {
					t.Errorf("port %q: want %sHOST:CONTAINER (loopback unless the user opts in)", p, publish)
				}
			}
			if s.NetworkMode == "host" {
				t.Error("network_mode: host publishes every port on every interface")
			}
			for k, v := range s.Environment {
				if secretName(k) && !strings.HasPrefix(v, "/secrets/") {
					t.Errorf("environment %s=%q: a secret in the file; give a file of the secrets volume (%s_FILE)", k, v, k)
				}
				if strings.HasSuffix(k, "_FILE") && !strings.HasPrefix(v, "/secrets/") {
					t.Errorf("environment %s=%q: want a file of the secrets volume (/secrets/...)", k, v)
				}
				if k == "QUORUMQ_INSECURE" {
					t.Errorf("environment %s: runs without TLS and tokens", k)
				}
			}
			for i, a := range s.Command {
				if a == "--insecure" || strings.HasPrefix(a, "--insecure=") {
					t.Errorf("command %v: --insecure", s.Command)
				}
				if s.subcommand() == "cert" {
					continue // init's --consul-token lists services, not tokens
				}
				if flag, ok := strings.CutPrefix(a, "--"); ok && secretName(flag) {
					if v, _ := s.flag(strings.Split(flag, "=")[0]); !strings.HasPrefix(v, "/secrets/") {
						t.Errorf("command flag %s %q: a secret on the command line (and in the file); give a file of the secrets volume", a, v)
					}
				}
				if u, err := url.Parse(a); err == nil && u.User != nil {
					if _, has := u.User.Password(); has {
						t.Errorf("command argument %d %q holds a password", i, a)
					}
				}
			}
			switch s.subcommand() {
			case "manager", "broker", "atm":
				checkSecuredProcess(t, s)
			}
		})
	}
	checkConsulACL(t, cf, root)
	// Secrets have shapes: quorumq tokens, UUIDs (Consul tokens), long hex (passwords
	// cert init makes), PEM blocks.
	for _, re := range []*regexp.Regexp{
		regexp.MustCompile(`qq_[A-Za-z0-9_-]{20,}`),
		regexp.MustCompile(`[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}`),
		regexp.MustCompile(`[0-9a-fA-F]{32,}`),
		regexp.MustCompile(`-----BEGIN`),
	} {
		if m := re.Find(raw); m != nil {
			t.Errorf("docker-compose.yml holds %q, which looks like a secret", m)
		}
	}
}

// secretName reports whether an environment variable or flag name says it holds a
// secret.
func secretName(name string) bool {
	n := strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
	for _, w := range []string{"PASSWORD", "TOKEN", "SECRET", "PRIVATE"} {
		if strings.Contains(n, w) {
			return true
		}
	}
	return false
}

// checkSecuredProcess: a manager, broker or ATM gets the cluster CA, its certificate and
// key and the tokens file (so its API is HTTPS with tokens and its Raft port mutual
// TLS), and a Consul token when it uses Consul.
func checkSecuredProcess(t *testing.T, s service) {
	t.Helper()
	setting := func(flag string) string {
		if v, ok := s.flag(flag); ok {
			return v
		}
		return s.Environment[envName(flag)]
	}
	for _, f := range []string{"ca", "cert", "key", "tokens"} {
		if v := setting(f); !strings.HasPrefix(v, "/secrets/") {
			t.Errorf("--%s (or %s) = %q: want a file of the secrets volume", f, envName(f), v)
		}
	}
	if (setting("tls-cert") == "") != (setting("tls-key") == "") {
		t.Error("--tls-cert and --tls-key: one without the other")
	}
	if _, ok := s.flag("consul"); ok {
		file := cmp.Or(setting("consul-token-file"), s.Environment["CONSUL_HTTP_TOKEN_FILE"])
		if want := s.subcommand() + ".token"; path.Base(file) != want || !strings.HasPrefix(file, "/secrets/") {
			t.Errorf("Consul token file %q: want its own service's token, /secrets/.../%s", file, want)
		}
	}
}

func envName(flag string) string {
	return "QUORUMQ_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// checkConsulACL: the Consul server denies by default (its config, checked by
// `consul validate` in TestComposeFile), and consul-acl gives each quorumq service a
// policy that writes only its own service name.
func checkConsulACL(t *testing.T, cf composeFile, root string) {
	t.Helper()
	cs := cf.Services["consul"]
	var configs []string
	for i, a := range cs.Command {
		if a == "-config-file" && i+1 < len(cs.Command) {
			configs = append(configs, cs.Command[i+1])
		}
	}
	denies := false
	for _, c := range configs {
		src, ok := cs.volumeAt(c)
		if !ok || !strings.HasPrefix(src, "./") {
			continue // the secrets volume's acl.hcl: tokens only
		}
		hcl, err := os.ReadFile(filepath.Join(root, filepath.FromSlash(src)))
		if err != nil {
			t.Fatal(err)
		}
		denies = denies || regexp.MustCompile(`acl\s*\{[^}]*enabled\s*=\s*true[^}]*default_policy\s*=\s*"deny"`).Match(hcl)
	}
	if !denies {
		t.Errorf("consul: no config from the checkout (%v) enables ACLs with default_policy deny", configs)
	}
	if _, ok := cs.Environment["CONSUL_HTTP_TOKEN"]; ok {
		t.Error("consul: CONSUL_HTTP_TOKEN in the file")
	}
	acl := cf.Services["consul-acl"]
	if len(acl.Entrypoint) < 2 {
		t.Fatalf("consul-acl: want an entrypoint running the ACL script, got %v", acl.Entrypoint)
	}
	src, ok := acl.volumeAt(acl.Entrypoint[len(acl.Entrypoint)-1])
	if !ok {
		t.Fatalf("consul-acl: %v runs no script mounted from the checkout", acl.Entrypoint)
	}
	script, err := os.ReadFile(filepath.Join(root, filepath.FromSlash(src)))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`service \"$name\" { policy = \"write\" }`, `service_prefix \"\" { policy = \"read\" }`} {
		if !strings.Contains(string(script), want) {
			t.Errorf("%s: no %s: each service's token must write its own name only", src, want)
		}
	}
	if strings.Contains(string(script), `service_prefix \"\" { policy = \"write\" }`) {
		t.Errorf("%s: a token that writes every service", src)
	}
	loop := regexp.MustCompile(`for svc in ([^;]*);`).FindSubmatch(script)
	for _, sub := range []string{"manager", "broker"} {
		if loop == nil || !slices.Contains(strings.Fields(string(loop[1])), sub) {
			t.Errorf("%s: makes no token for the %ss", src, sub)
		}
	}
}
