package proctest

import (
	"crypto/tls"
	"net/http"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"github.com/quorumq/quorumq/internal/secure"
)

// Every manager, broker and ATM a test starts runs secured: StartOpts adds --ca,
// --cert, --key and --tokens from one credential store per test process (made next to
// the binary), unless the arguments say --insecure or bring their own --ca. Children
// also get QUORUMQ_CA and QUORUMQ_TOKEN, so that client commands (topic, bench) reach
// the secured servers.
var (
	credsOnce sync.Once
	creds     *secure.Store
	credsErr  error
)

// Credentials is the test process's credential store: the CA, the tokens file and an
// admin token.
func Credentials(t testing.TB) *secure.Store {
	t.Helper()
	bin := Binary(t)
	credsOnce.Do(func() { creds, credsErr = secure.OpenStore(filepath.Join(filepath.Dir(bin), "credentials")) })
	if credsErr != nil {
		t.Fatalf("proctest: credentials: %v", credsErr)
	}
	return creds
}

// Token is the admin token of Credentials.
func Token(t testing.TB) string { return Credentials(t).AdminToken() }

// URL is the https URL of path on a secured process's HTTP API at addr.
func URL(addr, path string) string { return "https://" + addr + path }

// HTTPClient speaks to the secured processes' HTTP APIs as a cluster member would
// (TLS with a client certificate of the CA) and with the admin token, which the
// managers and ATMs require.
func HTTPClient(t testing.TB) *http.Client {
	t.Helper()
	return &http.Client{Transport: &bearer{token: Token(t), next: &http.Transport{TLSClientConfig: ClientTLS(t)}}}
}

// ClientTLS is the TLS configuration of a cluster member (identity client/test).
func ClientTLS(t testing.TB) *tls.Config {
	t.Helper()
	n, err := Credentials(t).Node(secure.Identity{Role: secure.RoleClient, ID: "test"})
	if err != nil {
		t.Fatalf("proctest: %v", err)
	}
	return n.ClientConfig()
}

type bearer struct {
	token string
	next  http.RoundTripper
}

func (b *bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return b.next.RoundTrip(r)
}

// secureArgs adds the credentials of the server that args start, if they start one.
func secureArgs(t testing.TB, args []string) ([]string, []string) {
	t.Helper()
	store := Credentials(t)
	env := []string{"QUORUMQ_CA=" + store.CAPath(), "QUORUMQ_TOKEN=" + store.AdminToken()}
	if len(args) == 0 || !slices.Contains([]string{secure.RoleManager, secure.RoleBroker, secure.RoleATM}, args[0]) ||
		slices.Contains(args, "--insecure") || slices.Contains(args, "--ca") {
		return args, env
	}
	id := ""
	if i := slices.Index(args, "--id"); i >= 0 && i+1 < len(args) {
		id = args[i+1]
	}
	flags, err := store.ServerFlags(secure.Identity{Role: args[0], ID: id})
	if err != nil {
		t.Fatalf("proctest: %v", err)
	}
	return append(slices.Clip(args), flags...), env
}
