package atm

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/quorumq/quorumq/internal/devtools/testkit"
)

// startServer serves the HTTP API, without an ATM yet, on a free port.
func startServer(t *testing.T) (*server, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := newServer(slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	go srv.serve(ln)
	t.Cleanup(func() { _ = srv.shutdown(context.Background()) })
	return srv, ln.Addr().String()
}

func startHTTP(t *testing.T, a *ATM) *Client {
	t.Helper()
	srv, addr := startServer(t)
	c := NewClient(addr, nil)
	// Before the node exists only /healthz answers.
	if _, err := c.Accounts(context.Background()); !isStatus(err, http.StatusServiceUnavailable) {
		t.Fatalf("accounts before ready: %v, want 503", err)
	}
	srv.setATM(a)
	return c
}

func isStatus(err error, code int) bool {
	var ae *APIError
	return errors.As(err, &ae) && ae.HTTPStatus == code
}

func TestHTTPAPI(t *testing.T) {
	a, _ := newLocalATM(t, 5*time.Second)
	c := startHTTP(t, a)
	ctx := context.Background()
	// A deposit sent twice under one Idempotency-Key is applied once, answered twice.
	for range 2 {
		if r, err := c.WithKey("k-alice").Deposit(ctx, "alice", "12.5"); err != nil || r.Balance != "12.50" || r.Cents != 1250 {
			t.Fatalf("deposit: %+v %v", r, err)
		}
	}
	if _, err := c.Deposit(ctx, "bob", "1"); err != nil {
		t.Fatal(err)
	}
	if r, err := c.Transfer(ctx, "alice", "bob", "2.25"); err != nil || r.FromBalance != "10.25" || r.ToBalance != "3.25" {
		t.Fatalf("transfer: %+v %v", r, err)
	}
	if r, err := c.Withdraw(ctx, "bob", "0.25"); err != nil || r.Balance != "3.00" {
		t.Fatalf("withdraw: %+v %v", r, err)
	}
	if _, err := c.Deposit(ctx, "ü/x?", "1"); err != nil {
		t.Fatal(err)
	}
	if r, err := c.Balance(ctx, "ü/x?"); err != nil || r.Name != "ü/x?" || r.Balance != "1.00" {
		t.Fatalf("balance of an escaped name: %+v %v", r, err)
	}
	if r, err := c.Balance(ctx, "alice"); err != nil || r.Balance != "10.25" {
		t.Fatalf("balance: %+v %v", r, err)
	}
	if r, err := c.Accounts(ctx); err != nil || len(r.Accounts) != 3 || r.Total != "14.25" {
		t.Fatalf("accounts: %+v %v", r, err)
	}
	if r, err := c.Status(ctx); err != nil || r.Leader != "atm1" || r.ID != "atm1" {
		t.Fatalf("status: %+v %v", r, err)
	}

	refusals := []struct {
		name   string
		do     func() error
		code   int
		reason string
	}{
		{"insufficient", func() error { _, err := c.Withdraw(ctx, "bob", "100"); return err }, 409, "insufficient_funds"},
		{"unknown", func() error { _, err := c.Transfer(ctx, "zed", "bob", "1"); return err }, 404, "unknown_account"},
		{"unknown balance", func() error { _, err := c.Balance(ctx, "zed"); return err }, 404, "unknown_account"},
		{"garbage amount", func() error { _, err := c.Deposit(ctx, "bob", "lots"); return err }, 400, "invalid_amount"},
		{"too many decimals", func() error { _, err := c.Deposit(ctx, "bob", "1.001"); return err }, 400, "invalid_amount"},
		{"negative", func() error { _, err := c.Deposit(ctx, "bob", "-1"); return err }, 400, "invalid_amount"},
		{"huge", func() error { _, err := c.Deposit(ctx, "bob", "1"+strings.Repeat("0", 30)); return err }, 400, "invalid_amount"},
		{"overflow", func() error { _, err := c.Deposit(ctx, "bob", "92233720368547758.07"); return err }, 422, "overflow"},
		{"bad name", func() error { _, err := c.Deposit(ctx, "", "1"); return err }, 400, "invalid_name"},
		{"same account", func() error { _, err := c.Transfer(ctx, "bob", "bob", "1"); return err }, 400, "same_account"},
		{"bad key", func() error { _, err := c.WithKey("two words").Deposit(ctx, "bob", "1"); return err }, 400, "invalid_idempotency_key"},
		{"key reused", func() error { _, err := c.WithKey("k-alice").Deposit(ctx, "bob", "1"); return err }, 422, "idempotency_key_reused"},
	}
	for _, r := range refusals {
		err := r.do()
		var ae *APIError
		if !errors.As(err, &ae) || ae.HTTPStatus != r.code || ae.Reason != r.reason || !ae.Refused() {
			t.Errorf("%s: %v, want %d %s", r.name, err, r.code, r.reason)
		}
		// Every failed write says it was not applied; reads say nothing of outcomes.
		if want := map[bool]string{true: OutcomeNotApplied}[r.name != "unknown balance"]; ae != nil && ae.Outcome != want {
			t.Errorf("%s: outcome %q, want %q", r.name, ae.Outcome, want)
		}
	}
	// Amount as a JSON number goes through the same decimal parser; a body that is not
	// JSON is a 400.
	for body, want := range map[string]int{`{"name":"bob","amount":1.5}`: 200, `{"name":"bob","amount":1.555}`: 400, `{"name":"bob"}`: 400, `not json`: 400} {
		resp, err := http.Post("http://"+strings.TrimPrefix(c.base, "http://")+"/deposit", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("POST /deposit %s: %d, want %d", body, resp.StatusCode, want)
		}
	}
	if r, _ := c.Accounts(ctx); r.Total != "15.75" {
		t.Fatalf("refusals changed state: total %s, want 15.75", r.Total)
	}
}

// TestRepliesEndWithNewline: replies printed one after another (the README's curl lines)
// stay apart, successes and failures alike.
func TestRepliesEndWithNewline(t *testing.T) {
	a, _ := newLocalATM(t, 5*time.Second)
	srv, addr := startServer(t)
	srv.setATM(a)
	testkit.RepliesEndWithNewline(t, "http://"+addr, []testkit.Request{
		{"POST", "/deposit", `{"name":"alice","amount":"1"}`},
		{"GET", "/balance/alice", ""},
		{"GET", "/balance/nobody", ""},
		{"POST", "/withdraw", `{`},
		{"GET", "/accounts", ""},
	})
}
