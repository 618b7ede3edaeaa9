package consul_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/quorumq/quorumq/discovery"
	"github.com/quorumq/quorumq/internal/devtools/consulagent"
	"github.com/quorumq/quorumq/internal/devtools/consultest"
)

// TestAgentDeniesWithoutToken: the dev agent runs with ACLs and default deny. Without a
// token nothing registers, KV is closed and the catalog shows nothing; a service's
// token registers that service only, reads the others, and touches no KV; the reader
// token registers nothing. The token files are the owner's only.
func TestAgentDeniesWithoutToken(t *testing.T) {
	agent := consultest.Start(t)
	ctx := testCtx(t)
	brokerTok, err := agent.Token(ctx, discovery.ServiceBroker)
	if err != nil {
		t.Fatal(err)
	}
	readerTok, err := agent.Token(ctx, consulagent.Reader)
	if err != nil {
		t.Fatal(err)
	}
	// A key and a manager, made with the management token, for the reads below.
	if code, body := agentCall(t, agent, agent.ManagementToken(), http.MethodPut, "/v1/kv/quorumq/secret", "v"); code != http.StatusOK {
		t.Fatalf("management token writes KV: %d %s", code, body)
	}
	h := newHealthServer(t, http.StatusOK)
	if err := newBackend(t, agent.HTTPAddr(), agent.ManagementToken()).Register(ctx, reg(discovery.ServiceManager, "i1", h, 0)); err != nil {
		t.Fatal(err)
	}
	waitHealthy(t, newBackend(t, agent.HTTPAddr(), agent.ManagementToken()), discovery.ServiceManager, "i1")

	for _, c := range []struct {
		name, token string
		call        call
		want        int
	}{
		{"anonymous registers", "", register(discovery.ServiceBroker), http.StatusForbidden},
		{"anonymous deregisters", "", call{http.MethodPut, "/v1/agent/service/deregister/" + discovery.ServiceManager + "-i1", ""}, http.StatusForbidden},
		{"anonymous reads KV", "", call{http.MethodGet, "/v1/kv/quorumq/secret", ""}, http.StatusForbidden},
		{"anonymous lists KV", "", call{http.MethodGet, "/v1/kv/quorumq?recurse", ""}, http.StatusNotFound}, // filtered to nothing
		{"anonymous writes KV", "", call{http.MethodPut, "/v1/kv/quorumq/x", "v"}, http.StatusForbidden},
		{"anonymous makes a token", "", call{http.MethodPut, "/v1/acl/token", `{"Description":"x"}`}, http.StatusForbidden},
		{"broker registers a broker", brokerTok, register(discovery.ServiceBroker), http.StatusOK},
		{"broker registers a manager", brokerTok, register(discovery.ServiceManager), http.StatusForbidden},
		{"broker deregisters a manager", brokerTok, call{http.MethodPut, "/v1/agent/service/deregister/" + discovery.ServiceManager + "-i1", ""}, http.StatusForbidden},
		{"broker reads KV", brokerTok, call{http.MethodGet, "/v1/kv/quorumq/secret", ""}, http.StatusForbidden},
		{"broker writes KV", brokerTok, call{http.MethodPut, "/v1/kv/quorumq/x", "v"}, http.StatusForbidden},
		{"reader registers", readerTok, register(discovery.ServiceATM), http.StatusForbidden},
	} {
		t.Run(c.name, func(t *testing.T) {
			code, body := agentCall(t, agent, c.token, c.call.method, c.call.path, c.call.body)
			if code != c.want {
				t.Fatalf("%s %s: %d %s, want %d", c.call.method, c.call.path, code, body, c.want)
			}
		})
	}

	// Reads are filtered rather than refused: without a token the catalog is empty.
	for _, c := range []struct {
		name, token string
		want        int
	}{{"anonymous", "", 0}, {"reader", readerTok, 1}, {"broker", brokerTok, 1}} {
		code, body := agentCall(t, agent, c.token, http.MethodGet, "/v1/health/service/"+discovery.ServiceManager+"?passing", "")
		var entries []json.RawMessage
		if code != http.StatusOK || json.Unmarshal([]byte(body), &entries) != nil || len(entries) != c.want {
			t.Errorf("%s reads the managers: %d %s, want %d entries", c.name, code, body, c.want)
		}
	}

	// The backend says what is missing.
	if _, err := newBackend(t, agent.HTTPAddr(), "").Healthy(ctx, discovery.ServiceManager); err == nil || !strings.Contains(err.Error(), "QUORUMQ_CONSUL_TOKEN") {
		t.Errorf("healthy without a token: %v, want a hint at QUORUMQ_CONSUL_TOKEN", err)
	}
	err = newBackend(t, agent.HTTPAddr(), readerTok).Register(ctx, reg(discovery.ServiceATM, "i2", h, 0))
	if err == nil || !strings.Contains(err.Error(), "--consul-token-file") {
		t.Errorf("register with the reader token: %v, want a hint at --consul-token-file", err)
	}

	for _, f := range []string{agent.ManagementTokenFile(), mustTokenFile(t, agent, consulagent.Reader)} {
		st, err := os.Stat(f)
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v %v, want mode 0600", f, st.Mode(), err)
		}
	}
}

// call is one request to the agent's HTTP API.
type call struct{ method, path, body string }

func register(service string) call {
	return call{http.MethodPut, "/v1/agent/service/register", fmt.Sprintf(`{"ID":"%s-x","Name":%q,"Port":1}`, service, service)}
}

func mustTokenFile(t *testing.T, a *consulagent.Agent, name string) string {
	f, err := a.TokenFile(testCtx(t), name)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// agentCall sends one request to the agent's HTTP API with token ("" sends none).
func agentCall(t *testing.T, a *consulagent.Agent, token, method, path, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(testCtx(t), method, "http://"+a.HTTPAddr()+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("X-Consul-Token", token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(b))
}
