package atm

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/quorumq/quorumq/atm/atmapi"
	"github.com/quorumq/quorumq/internal/httpjson"
)

// Client talks to one ATM's HTTP API (scripts, tests and `quorumq bench atm`).
type Client struct {
	base string
	http *http.Client
	key  string // Idempotency-Key sent with writes, if set
	// Token is sent as the bearer token: a secured ATM wants one with the produce role
	// to move money and consume to read (admin does both).
	Token string
}

// NewClient returns a client for the ATM serving HTTP at addr: host:port for plain
// http, or a URL (https://host:port) with hc's TLS configuration trusting its CA.
func NewClient(addr string, hc *http.Client) *Client {
	if hc == nil {
		hc = http.DefaultClient
	}
	if !strings.Contains(addr, "://") {
		addr = "http://" + addr
	}
	return &Client{base: addr, http: hc}
}

// WithKey returns a client that sends key as the Idempotency-Key of its writes: a write
// retried with the same key (on any ATM, within bank.KeyRetention) is applied once and
// answered as the first time.
func (c *Client) WithKey(key string) *Client {
	k := *c
	k.key = key
	return &k
}

// APIError is a failure reply from the ATM. Outcome (writes only) says whether the
// operation certainly did not happen (OutcomeNotApplied) or may still (OutcomeUnknown).
type APIError struct {
	HTTPStatus int
	Reason     string
	Message    string
	Outcome    string
}

func (e *APIError) Error() string {
	return fmt.Sprintf("%s (%d %s)", e.Message, e.HTTPStatus, e.Reason)
}

// Refused reports whether the ATM decided not to do the operation.
func (e *APIError) Refused() bool { return e.HTTPStatus >= 400 && e.HTTPStatus < 500 }

func (c *Client) do(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if c.key != "" && method == http.MethodPost {
		req.Header.Set(IdempotencyKey, c.key)
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	var f atmapi.Failure
	resp, data, err := httpjson.Do(c.http, req, &f)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return &APIError{HTTPStatus: resp.StatusCode, Reason: f.Code, Message: f.Message, Outcome: f.Outcome}
	}
	return json.Unmarshal(data, out)
}

func amountJSON(amount string) json.RawMessage {
	b, _ := json.Marshal(amount) // a string always marshals
	return b
}

// Deposit adds amount (a decimal like "12.50") to name.
func (c *Client) Deposit(ctx context.Context, name, amount string) (atmapi.BalanceResponse, error) {
	return c.money(ctx, "/deposit", name, amount)
}

// Withdraw takes amount from name.
func (c *Client) Withdraw(ctx context.Context, name, amount string) (atmapi.BalanceResponse, error) {
	return c.money(ctx, "/withdraw", name, amount)
}

func (c *Client) money(ctx context.Context, path, name, amount string) (atmapi.BalanceResponse, error) {
	var out atmapi.BalanceResponse
	err := c.do(ctx, http.MethodPost, path, atmapi.MoneyRequest{Name: name, Amount: amountJSON(amount)}, &out)
	return out, err
}

// Transfer moves amount from one account to another.
func (c *Client) Transfer(ctx context.Context, from, to, amount string) (atmapi.TransferResponse, error) {
	var out atmapi.TransferResponse
	err := c.do(ctx, http.MethodPost, "/transfer", atmapi.TransferRequest{From: from, To: to, Amount: amountJSON(amount)}, &out)
	return out, err
}

// Balance reads one account.
func (c *Client) Balance(ctx context.Context, name string) (atmapi.BalanceResponse, error) {
	var out atmapi.BalanceResponse
	err := c.do(ctx, http.MethodGet, "/balance/"+url.PathEscape(name), nil, &out)
	return out, err
}

// Accounts reads every account.
func (c *Client) Accounts(ctx context.Context) (atmapi.AccountsResponse, error) {
	var out atmapi.AccountsResponse
	err := c.do(ctx, http.MethodGet, "/accounts", nil, &out)
	return out, err
}

// Status reads the ATM's view of its group.
func (c *Client) Status(ctx context.Context) (atmapi.StatusResponse, error) {
	var out atmapi.StatusResponse
	err := c.do(ctx, http.MethodGet, "/status", nil, &out)
	return out, err
}
