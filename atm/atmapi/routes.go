package atmapi

import "github.com/quorumq/quorumq/internal/apidoc"

// Every route the ATMs serve, with its types: the source of the OpenAPI document they
// serve at GET /openapi.json. The ATMs' test fails when a served route is missing here
// or a route here is not served.

var idempotencyKey = apidoc.Param{In: "header", Name: "Idempotency-Key",
	Description: "applies the write at most once: a retry with the same key answers the first outcome; the same key with another request is refused (422, idempotency_key_reused)"}

// Routes is the ATMs' HTTP API.
var Routes = []apidoc.Route{
	{Method: "GET", Path: "/healthz", Summary: "Passes as long as the process serves, before the ATM has joined its group too.", Reply: HealthResponse{}},
	{Method: "GET", Path: "/metrics", Summary: "Prometheus metrics: requests by operation, the ATM's Raft state, its batches.", Text: "text/plain"},
	{Method: "GET", Path: "/openapi.json", Summary: "This document."},
	{Method: "POST", Path: "/deposit", Summary: "Add amount to an account (created on its first deposit).", Params: []apidoc.Param{idempotencyKey}, Body: MoneyRequest{}, Reply: BalanceResponse{}},
	{Method: "POST", Path: "/withdraw", Summary: "Take amount from an account; 409 insufficient_funds when it holds less.", Params: []apidoc.Param{idempotencyKey}, Body: MoneyRequest{}, Reply: BalanceResponse{}},
	{Method: "POST", Path: "/transfer", Summary: "Move amount from one account to another, both or neither.", Params: []apidoc.Param{idempotencyKey}, Body: TransferRequest{}, Reply: TransferResponse{}},
	{Method: "GET", Path: "/balance/:name", Summary: "An account's balance (linearizable, unless the ATM runs with stale reads).", Reply: BalanceResponse{}},
	{Method: "GET", Path: "/accounts", Summary: "Every account and the total (linearizable, unless the ATM runs with stale reads).", Reply: AccountsResponse{}},
	{Method: "GET", Path: "/status", Summary: "This member's Raft state: its id, role, leader, applied index and members.", Reply: StatusResponse{}},
}

// OpenAPI is the ATMs' OpenAPI 3 document (JSON).
var OpenAPI = apidoc.Lazy(apidoc.Info{
	Title:   "quorumq ATM",
	Version: "1",
	Description: "The HTTP API of a quorumq ATM, one member of the bank's Raft group. Amounts are decimal strings " +
		"(\"12.50\") with the exact cents beside them; a request may give the amount as a string or a JSON number. " +
		"Every failure is {\"status\":\"failure\",\"message\",\"code\"} (code repeated as \"reason\"), with " +
		"\"outcome\" (not_applied or unknown) on writes.",
	Failure: Failure{},
}, Routes)
