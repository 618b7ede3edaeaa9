package scenario

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/quorumq/quorumq/cmd/quorumq/proctest"
	"github.com/quorumq/quorumq/internal/secure"
)

// endpoint is one route of a process's HTTP API and the token role it needs ("" for
// any token).
type endpoint struct {
	method, path, body, role string
}

var (
	managerEndpoints = []endpoint{
		{"POST", "/topics", `{"name":"t"}`, secure.RoleAdmin},
		{"GET", "/topics", "", ""},
		{"GET", "/topics/t", "", ""},
		{"POST", "/topics/t/partitions", `{"count":2}`, secure.RoleAdmin},
		{"GET", "/topics/t/partitions/0/messages?offset=0", "", secure.RoleConsume},
		{"POST", "/producer/register", `{"topic":"t"}`, secure.RoleProduce},
		{"POST", "/consumer/register", `{"topic":"t"}`, secure.RoleConsume},
		{"POST", "/producer/produce", `{"topic":"t","producer_id":1,"message":"m"}`, secure.RoleProduce},
		{"GET", "/consumer/consume?topic=t&consumer_id=1", "", secure.RoleConsume},
		{"GET", "/size?topic=t&consumer_id=1", "", secure.RoleConsume},
		{"GET", "/brokers", "", ""},
		{"DELETE", "/brokers/b1", "", secure.RoleAdmin},
		{"GET", "/managers", "", ""},
		{"GET", "/metrics", "", ""},
	}
	brokerEndpoints = []endpoint{
		{"POST", "/replicas", `{"topic":"t","partition":0}`, secure.RoleAdmin},
		{"GET", "/replicas", "", ""},
		{"GET", "/replicas/t/0", "", ""},
		{"DELETE", "/replicas/t/0", "", secure.RoleAdmin},
		{"GET", "/replicas/t/0/messages?offset=0", "", secure.RoleConsume},
		{"POST", "/replicas/t/0/members", `{"id":"b9","raft_addr":"127.0.0.1:1"}`, secure.RoleAdmin},
		{"DELETE", "/replicas/t/0/members/b1", "", secure.RoleAdmin},
		{"POST", "/produce", `{"topic":"t","partition":0,"message":"m"}`, secure.RoleProduce},
		{"POST", "/consumers", `{"topic":"t","partition":0}`, secure.RoleConsume},
		{"POST", "/consume", `{"topic":"t","partition":0,"consumer_id":1}`, secure.RoleConsume},
		{"GET", "/size?topic=t&partition=0&consumer_id=1", "", secure.RoleConsume},
		{"PUT", "/manager", `{"id":"m9","http_addr":"127.0.0.1:1","term":99}`, secure.RoleAdmin},
		{"GET", "/manager", "", ""},
		{"GET", "/metrics", "", ""},
	}
	atmEndpoints = []endpoint{
		{"POST", "/deposit", `{"name":"a","amount":"1"}`, secure.RoleProduce},
		{"POST", "/withdraw", `{"name":"a","amount":"1"}`, secure.RoleProduce},
		{"POST", "/transfer", `{"from":"a","to":"b","amount":"1"}`, secure.RoleProduce},
		{"GET", "/balance/a", "", secure.RoleConsume},
		{"GET", "/accounts", "", secure.RoleConsume},
		{"GET", "/status", "", secure.RoleConsume},
		{"GET", "/metrics", "", ""},
	}
)

// TestEveryPortRefusesStrangers calls every endpoint of a manager, a broker and an ATM
// without credentials and with a token of the wrong role, and every Raft port and the
// brokers' API with certificates the cluster did not sign: 401, 403 or a failed
// handshake, never the handler.
func TestEveryPortRefusesStrangers(t *testing.T) {
	c := Start(t, Options{Brokers: 1, Managers: 1})
	atmHTTP, atmRaft := proctest.FreeAddr(t), proctest.FreeAddr(t)
	proctest.Start(t, "atm1", "atm", "--id", "atm1", "--data-dir", t.TempDir(), "--raft", atmRaft, "--http", atmHTTP,
		"--peers", "atm1="+atmRaft, "--bootstrap-expect", "1", "--terminal=false")

	store := proctest.Credentials(t)
	tokens := map[string]string{}
	for _, role := range []string{secure.RoleProduce, secure.RoleConsume} {
		tok, err := secure.AddToken(store.TokensPath(), []string{role}, nil, "security test")
		if err != nil {
			t.Fatal(err)
		}
		tokens[role] = tok
	}
	pool, err := secure.LoadPool(store.CAPath())
	if err != nil {
		t.Fatal(err)
	}
	// An outsider trusts the cluster's servers (it has the CA certificate) but holds no
	// certificate of the cluster: the public clients' position.
	outsider := &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool}}}
	stranger := strangerCert(t)

	m, b := c.Managers[0], c.Brokers[0]
	waitOK(t, outsider, "https://"+m.HTTP+"/healthz", "")
	waitOK(t, outsider, "https://"+b.HTTP+"/healthz", "")
	// The ATM answers once its group formed; the admin token may read its status.
	waitOK(t, outsider, "https://"+atmHTTP+"/status", proctest.Token(t))

	for _, p := range []struct {
		name, addr string
		eps        []endpoint
	}{{"manager", m.HTTP, managerEndpoints}, {"broker", b.HTTP, brokerEndpoints}, {"atm", atmHTTP, atmEndpoints}} {
		for _, ep := range p.eps {
			t.Run(p.name+" "+ep.method+" "+ep.path, func(t *testing.T) {
				if code, body := call(t, outsider, p.addr, ep, ""); code != http.StatusUnauthorized {
					t.Errorf("without a token: %d %s, want 401", code, body)
				}
				if code, body := call(t, outsider, p.addr, ep, "qq_not-a-token"); code != http.StatusUnauthorized {
					t.Errorf("with an unknown token: %d %s, want 401", code, body)
				}
				if wrong := wrongRole(ep.role); wrong != "" {
					if code, body := call(t, outsider, p.addr, ep, tokens[wrong]); code != http.StatusForbidden {
						t.Errorf("with a %s token: %d %s, want 403", wrong, code, body)
					}
				}
			})
		}
	}

	t.Run("broker API with a certificate of another CA", func(t *testing.T) {
		cl := &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{stranger}}}}
		resp, err := cl.Get("https://" + b.HTTP + "/replicas")
		if err == nil {
			resp.Body.Close()
			t.Fatalf("GET /replicas answered %s to a certificate of another CA", resp.Status)
		}
	})

	cluster := proctest.ClientTLS(t) // signed by the cluster CA, but not a broker's, manager's or ATM's
	for _, rp := range []struct{ name, addr string }{{"manager", m.Raft}, {"broker", b.Raft}, {"atm", atmRaft}} {
		for _, cc := range []struct {
			name string
			cfg  *tls.Config // nil: plain TCP
		}{
			{"plain TCP", nil},
			{"TLS without a certificate", &tls.Config{InsecureSkipVerify: true}},
			{"certificate of another CA", &tls.Config{InsecureSkipVerify: true, Certificates: []tls.Certificate{stranger}}},
			{"cluster certificate of another role", cluster},
		} {
			t.Run(rp.name+" raft port, "+cc.name, func(t *testing.T) {
				if err := raftHello(rp.addr, cc.cfg); err == nil {
					t.Fatal("the raft port kept the connection open")
				}
			})
		}
	}
}

// wrongRole is a token role that does not hold role.
func wrongRole(role string) string {
	switch role {
	case secure.RoleAdmin, secure.RoleConsume:
		return secure.RoleProduce
	case secure.RoleProduce:
		return secure.RoleConsume
	}
	return ""
}

func call(t *testing.T, cl *http.Client, addr string, ep endpoint, token string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(ep.method, "https://"+addr+ep.path, strings.NewReader(ep.body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := cl.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", ep.method, ep.path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 400 && !strings.Contains(string(body), `"status":"failure"`) {
		t.Errorf("%s %s: %d reply %q is not the JSON failure", ep.method, ep.path, resp.StatusCode, body)
	}
	return resp.StatusCode, string(body)
}

// waitOK polls url until it answers 200.
func waitOK(t *testing.T, cl *http.Client, url, token string) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		req, _ := http.NewRequest("GET", url, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := cl.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never answered 200 (last: %v)", url, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// raftHello connects to a Raft port (over TLS with cfg, or plain), sends a preamble's
// worth of bytes and reports whether the server still holds the connection after that:
// nil means it did not close it within a second.
func raftHello(addr string, cfg *tls.Config) error {
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return err
	}
	defer nc.Close()
	if cfg != nil {
		tc := tls.Client(nc, cfg)
		tc.SetDeadline(time.Now().Add(5 * time.Second))
		if err := tc.Handshake(); err != nil {
			return err
		}
		nc = tc
	}
	if _, err := nc.Write([]byte("QMQT\x02")); err != nil {
		return err
	}
	nc.SetReadDeadline(time.Now().Add(time.Second))
	_, err = nc.Read(make([]byte, 1))
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		return nil
	}
	if err == nil {
		return fmt.Errorf("the server wrote to a stranger")
	}
	return err
}

// strangerCert is a client certificate of a CA the cluster never saw.
func strangerCert(t *testing.T) tls.Certificate {
	t.Helper()
	dir := t.TempDir()
	if err := secure.CreateCA(dir); err != nil {
		t.Fatal(err)
	}
	if err := secure.CreateNode(dir, secure.Identity{Role: secure.RoleBroker, ID: "b1"}, nil, filepath.Join(dir, "n")); err != nil {
		t.Fatal(err)
	}
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, "n", secure.NodeFile), filepath.Join(dir, "n", secure.NodeKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// TestInsecureIsAChoice: a broker without certificates refuses to start unless it is
// told --insecure, and then serves plain HTTP to anyone.
func TestInsecureIsAChoice(t *testing.T) {
	args := []string{"broker", "--id", "b1", "--data-dir", t.TempDir(), "--raft", proctest.FreeAddr(t)}
	// An empty --ca: proctest adds no credentials, and QUORUMQ_CA does not fill it in.
	refused := proctest.Start(t, "refused", append(args, "--http", proctest.FreeAddr(t), "--ca", "")...)
	select {
	case <-refused.Done():
	case <-time.After(30 * time.Second):
		t.Fatal("a broker without certificates kept running")
	}
	if err := refused.Wait(); err == nil || !strings.Contains(refused.Output(), "--insecure") {
		t.Fatalf("a broker without certificates started (or said nothing of --insecure): %v\n%s", err, refused.Output())
	}
	httpAddr := proctest.FreeAddr(t)
	p := proctest.Start(t, "insecure", append(args, "--http", httpAddr, "--insecure")...)
	p.WaitOutput(t, "listening", 30*time.Second)
	if !strings.Contains(p.Output(), "--insecure") {
		t.Errorf("no warning about --insecure in the log:\n%s", p.Output())
	}
	resp, err := http.Get("http://" + httpAddr + "/replicas")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /replicas of an --insecure broker: %s", resp.Status)
	}
}
