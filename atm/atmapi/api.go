// Package atmapi is the contract of the ATMs' HTTP API, shared by the server and the
// client (package atm) and described by the OpenAPI document the ATMs serve at
// GET /openapi.json. Amounts travel as decimal strings ("12.50") with the exact cents next to them; a
// request may give the amount as a string or a JSON number, both parsed as decimals.
package atmapi

import (
	"encoding/json"

	"github.com/quorumq/quorumq/internal/httpjson"
)

// MoneyRequest is the body of POST /deposit and POST /withdraw.
type MoneyRequest struct {
	Name   string          `json:"name"`
	Amount json.RawMessage `json:"amount"`
}

// TransferRequest is the body of POST /transfer.
type TransferRequest struct {
	From   string          `json:"from"`
	To     string          `json:"to"`
	Amount json.RawMessage `json:"amount"`
}

// BalanceResponse answers deposit, withdraw and GET /balance/:name.
type BalanceResponse struct {
	Status  string `json:"status"`
	Name    string `json:"name"`
	Balance string `json:"balance"`
	Cents   int64  `json:"cents"`
}

// TransferResponse answers POST /transfer with both balances after the transfer.
type TransferResponse struct {
	Status      string `json:"status"`
	From        string `json:"from"`
	To          string `json:"to"`
	FromBalance string `json:"from_balance"`
	ToBalance   string `json:"to_balance"`
	FromCents   int64  `json:"from_cents"`
	ToCents     int64  `json:"to_cents"`
}

// AccountJSON is one account in AccountsResponse.
type AccountJSON struct {
	Name    string `json:"name"`
	Balance string `json:"balance"`
	Cents   int64  `json:"cents"`
}

// AccountsResponse answers GET /accounts.
type AccountsResponse struct {
	Status     string        `json:"status"`
	Accounts   []AccountJSON `json:"accounts"`
	Total      string        `json:"total"`
	TotalCents int64         `json:"total_cents"`
}

// StatusResponse answers GET /status.
type StatusResponse struct {
	Status  string   `json:"status"`
	ID      string   `json:"id"`
	State   string   `json:"state"`
	Leader  string   `json:"leader"`
	Applied uint64   `json:"applied"`
	Members []string `json:"members"`
	Stale   bool     `json:"stale_reads"`
	// Recovering is set while the member recovers from a storage fault: what was found
	// and what it waits for.
	Recovering string `json:"recovering,omitempty"`
}

// HealthResponse answers GET /healthz, as soon as the process serves. Recovering is set
// while the member recovers from a storage fault (Consul keeps it as the check's output).
type HealthResponse struct {
	Status     string `json:"status"`
	Recovering string `json:"recovering,omitempty"`
	// Message says why a halted member stopped applying the log (status "failure",
	// HTTP 503): it needs a binary that knows the commands the others write.
	Message string `json:"message,omitempty"`
}

// Failure is every error reply, the shape every quorumq service shares. Code is a
// stable machine-readable word (insufficient_funds, unknown_account, invalid_amount,
// invalid_name, same_account, overflow, idempotency_key_reused, bad_request,
// unavailable, ...), repeated as Reason, its older name; Message is for people.
// Outcome, on failed writes only, is not_applied or unknown (atm.OutcomeOf).
type Failure = httpjson.Failure
