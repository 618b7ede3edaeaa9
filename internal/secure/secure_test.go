package secure

import (
	"crypto/tls"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gofiber/fiber/v2"
)

// newNode creates a CA in a temporary directory (unless caDir is given) and a node
// certificate for id signed by it.
func newNode(t *testing.T, caDir, id string) *Node {
	t.Helper()
	if caDir == "" {
		caDir = t.TempDir()
		if err := CreateCA(caDir); err != nil {
			t.Fatal(err)
		}
	}
	ident, err := ParseIdentity(id)
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	if err := CreateNode(caDir, ident, []string{"node.example"}, out); err != nil {
		t.Fatal(err)
	}
	n, err := LoadNode(filepath.Join(caDir, CAFile), filepath.Join(out, NodeFile), filepath.Join(out, NodeKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if n.Identity != ident {
		t.Fatalf("identity %v, want %v", n.Identity, ident)
	}
	return n
}

func TestCreateCARefusesToOverwrite(t *testing.T) {
	dir := t.TempDir()
	if err := CreateCA(dir); err != nil {
		t.Fatal(err)
	}
	if err := CreateCA(dir); err == nil {
		t.Fatal("a second CreateCA in the same directory should fail")
	}
}

// TestMutualTLS: only a client with a certificate from the cluster CA completes the
// handshake with RequireAndVerifyClientCert, and the server sees its identity.
func TestMutualTLS(t *testing.T) {
	caDir := t.TempDir()
	if err := CreateCA(caDir); err != nil {
		t.Fatal(err)
	}
	server := newNode(t, caDir, "broker/b1")
	peer := newNode(t, caDir, "broker/b2")
	stranger := newNode(t, "", "broker/b2") // same name, another CA
	noCert := &tls.Config{MinVersion: tls.VersionTLS13, InsecureSkipVerify: true}

	ln, err := tls.Listen("tcp", "127.0.0.1:0", server.ServerConfig(tls.RequireAndVerifyClientCert))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	seen := make(chan string, 10)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			tc := c.(*tls.Conn)
			if tc.Handshake() == nil {
				id, _ := PeerIdentity(tc.ConnectionState())
				seen <- id.String()
				tc.Write([]byte("x"))
			}
			tc.Close()
		}
	}()
	for _, tc := range []struct {
		name string
		cfg  *tls.Config
		ok   bool
	}{
		{"cluster certificate", peer.ClientConfig(), true},
		{"certificate of another CA", stranger.ClientConfig(), false},
		{"no certificate", noCert, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := tls.Dial("tcp", ln.Addr().String(), tc.cfg)
			if err == nil {
				// TLS 1.3: the server's verdict on our certificate arrives with the first read.
				_, err = io.ReadFull(c, make([]byte, 1))
				c.Close()
			}
			if tc.ok != (err == nil) {
				t.Fatalf("handshake error %v, want success=%v", err, tc.ok)
			}
			if tc.ok {
				if got := <-seen; got != "broker/b2" {
					t.Fatalf("server saw %q, want broker/b2", got)
				}
			}
		})
	}

	// A client of the cluster refuses a server whose certificate another CA signed.
	sln, err := tls.Listen("tcp", "127.0.0.1:0", stranger.ServerConfig(tls.NoClientCert))
	if err != nil {
		t.Fatal(err)
	}
	defer sln.Close()
	go func() {
		if c, err := sln.Accept(); err == nil {
			c.(*tls.Conn).Handshake()
			c.Close()
		}
	}()
	if c, err := tls.Dial("tcp", sln.Addr().String(), peer.ClientConfig()); err == nil {
		c.Close()
		t.Fatal("the client accepted a server certificate from another CA")
	}
}

func TestTokens(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens.json")
	admin, err := AddToken(path, []string{RoleAdmin}, nil, "admin")
	if err != nil {
		t.Fatal(err)
	}
	orders, err := AddToken(path, []string{RoleProduce}, []string{"orders"}, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := AddToken(path, []string{"root"}, nil, ""); err == nil {
		t.Fatal("an unknown role should be refused")
	}
	if b, _ := os.ReadFile(path); strings.Contains(string(b), admin) {
		t.Fatal("the tokens file holds a token in clear")
	}
	toks, err := LoadTokens(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		token, role, topic string
		ok                 bool
	}{
		{admin, RoleConsume, "any", true},
		{admin, RoleAdmin, "", true},
		{orders, RoleProduce, "orders", true},
		{orders, RoleProduce, "payments", false},
		{orders, RoleConsume, "orders", false},
		{orders, "", "", true},
		{"qq_nope", "", "", false},
	} {
		g := toks.Check(tc.token)
		if got := g != nil && g.Allows(tc.role, tc.topic); got != tc.ok {
			t.Errorf("token %.8s… role %q topic %q: allowed=%v, want %v", tc.token, tc.role, tc.topic, got, tc.ok)
		}
	}
}

// TestRequire: the middleware's answers for every kind of credential.
func TestRequire(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens.json")
	admin, _ := AddToken(path, []string{RoleAdmin}, nil, "")
	produce, _ := AddToken(path, []string{RoleProduce}, []string{"orders"}, "")
	toks, err := LoadTokens(path)
	if err != nil {
		t.Fatal(err)
	}
	auth := &Auth{Tokens: toks}
	app := fiber.New(fiber.Config{DisableStartupMessage: true})
	ok := func(c *fiber.Ctx) error { return c.SendString("ok") }
	app.Post("/topics", auth.Require(RoleAdmin, nil), ok)
	app.Post("/produce", auth.Require(RoleProduce, TopicBody), ok)
	app.Get("/size", auth.Require(RoleConsume, TopicQuery), ok)
	for _, tc := range []struct {
		name, method, path, token, body string
		code                            int
	}{
		{"no token", "POST", "/topics", "", "", 401},
		{"bad token", "POST", "/topics", "qq_bad", "", 401},
		{"admin", "POST", "/topics", admin, "", 200},
		{"wrong role", "POST", "/topics", produce, "", 403},
		{"right topic", "POST", "/produce", produce, `{"topic":"orders"}`, 200},
		{"other topic", "POST", "/produce", produce, `{"topic":"payments"}`, 403},
		{"consume with produce token", "GET", "/size?topic=orders", produce, "", 403},
		{"admin consumes", "GET", "/size?topic=orders", admin, "", 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest(tc.method, tc.path, strings.NewReader(tc.body))
			if tc.token != "" {
				req.Header.Set("Authorization", "Bearer "+tc.token)
			}
			resp, err := app.Test(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tc.code {
				t.Fatalf("%s %s: %d %s, want %d", tc.method, tc.path, resp.StatusCode, body, tc.code)
			}
			if tc.code != http.StatusOK && !strings.Contains(string(body), `"status":"failure"`) {
				t.Fatalf("failure body %s is not the API's JSON failure", body)
			}
		})
	}
	var nilAuth *Auth
	app2 := fiber.New(fiber.Config{DisableStartupMessage: true})
	app2.Get("/", nilAuth.Require(RoleAdmin, nil), ok)
	if resp, err := app2.Test(httptest.NewRequest("GET", "/", nil)); err != nil || resp.StatusCode != 200 {
		t.Fatalf("a nil Auth (insecure) should let requests through: %v %v", resp, err)
	}
}
