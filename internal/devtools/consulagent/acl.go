package consulagent

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"github.com/quorumq/quorumq/consul"
)

// The dev agent runs with ACLs on and everything denied without a token (Consul's
// production setting): a local process that reaches the agent cannot register a
// service under quorumq's names, deregister a broker or read the catalog. The
// management token is made on the first start and kept in <DataDir>/acl; every quorumq
// process gets a token of its own (TokenFile) that may register only its service.

// Reader is the TokenFile name of a token that reads the catalog and may register
// nothing: what a client (the CLI, the SDK) needs to find the managers.
const Reader = "reader"

// aclDir holds the agent's token files (0600) under its data directory.
func (c AgentConfig) aclDir() string { return filepath.Join(c.DataDir, "acl") }

// ManagementTokenFile holds the agent's management token: the Consul UI's login, and
// what `consul acl` commands need.
func (a *Agent) ManagementTokenFile() string {
	return filepath.Join(a.cfg.aclDir(), "management.token")
}

// ManagementToken is the agent's management token (every right).
func (a *Agent) ManagementToken() string { return a.mgmt }

// aclConfigFile writes the agent's ACL configuration (it names the management token,
// so it goes in a 0600 file, never on the command line) and returns its path.
func (a *Agent) aclConfigFile() (string, error) {
	tok, err := readOrMakeSecret(a.ManagementTokenFile())
	if err != nil {
		return "", err
	}
	a.mgmt = tok
	// The agent's own token is the management token: the agent registers its node and
	// syncs what services register, which default deny would refuse it.
	hcl := fmt.Sprintf(`acl {
  enabled        = true
  default_policy = "deny"
  down_policy    = "extend-cache"
  tokens {
    initial_management = %q
    agent              = %q
  }
}
`, tok, tok)
	path := filepath.Join(a.cfg.aclDir(), "acl.hcl")
	return path, writeSecret(path, hcl)
}

// TokenFile returns a file (0600) holding a token for quorumq's service name: it may
// register, tag and deregister instances of that service and read every service and
// node (a manager watches the brokers, a broker and an ATM find their peers). name
// Reader gives a read-only token. The secret is kept across runs of the same data
// directory and created again on the agent after each (re)start, since a dev agent
// keeps its ACL state in memory.
func (a *Agent) TokenFile(ctx context.Context, name string) (string, error) {
	if name == "" || strings.ContainsAny(name, `/\"`) {
		return "", fmt.Errorf("consul: token name %q", name)
	}
	path := filepath.Join(a.cfg.aclDir(), name+".token")
	a.aclMu.Lock()
	defer a.aclMu.Unlock()
	if _, ok := a.granted[name]; ok {
		return path, nil
	}
	secret, err := readOrMakeSecret(path)
	if err != nil {
		return "", err
	}
	if err := a.grant(ctx, name, secret); err != nil {
		return "", err
	}
	a.granted[name] = secret
	return path, nil
}

// Token is the secret TokenFile keeps for name.
func (a *Agent) Token(ctx context.Context, name string) (string, error) {
	if _, err := a.TokenFile(ctx, name); err != nil {
		return "", err
	}
	a.aclMu.Lock()
	defer a.aclMu.Unlock()
	return a.granted[name], nil
}

// regrant creates again every token handed out before a restart.
func (a *Agent) regrant(ctx context.Context) error {
	a.aclMu.Lock()
	defer a.aclMu.Unlock()
	for name, secret := range a.granted {
		if err := a.grant(ctx, name, secret); err != nil {
			return err
		}
	}
	return nil
}

// grant creates policy quorumq-token-<name> and a token with the given secret.
func (a *Agent) grant(ctx context.Context, name, secret string) error {
	rules := `service_prefix "" { policy = "read" }
node_prefix "" { policy = "read" }
`
	if name != Reader {
		rules += fmt.Sprintf("service %q { policy = \"write\" }\n", name)
	}
	policy := "quorumq-token-" + name
	if err := a.put(ctx, "/v1/acl/policy", map[string]any{"Name": policy, "Rules": rules,
		"Description": "made by quorumq for " + name}); err != nil {
		return fmt.Errorf("consul: ACL policy %s: %w", policy, err)
	}
	if err := a.put(ctx, "/v1/acl/token", map[string]any{"SecretID": secret, "Description": "quorumq " + name,
		"Policies": []map[string]string{{"Name": policy}}}); err != nil {
		return fmt.Errorf("consul: ACL token for %s: %w", name, err)
	}
	return nil
}

// put sends body as JSON to the agent's path with the management token.
func (a *Agent) put(ctx context.Context, path string, body any) error {
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, "http://"+a.cfg.HTTPAddr+path, bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("X-Consul-Token", a.mgmt)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		return fmt.Errorf("%s: %s %s", path, resp.Status, bytes.TrimSpace(msg))
	}
	return nil
}

// readOrMakeSecret reads path's token, or makes a random one (a UUID, as Consul wants
// secrets) and writes it there.
func readOrMakeSecret(path string) (string, error) {
	tok, err := consul.ReadTokenFile(path)
	if err == nil || !errors.Is(err, os.ErrNotExist) {
		return tok, err
	}
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	b[6], b[8] = b[6]&0x0f|0x40, b[8]&0x3f|0x80 // version 4, RFC 4122 variant
	tok = fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
	return tok, writeSecret(path, tok+"\n")
}

// writeSecret writes content to path readable by its owner only, atomically.
func writeSecret(path, content string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("consul: %w", err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		return fmt.Errorf("consul: %w", err)
	}
	return os.Rename(tmp, path)
}
