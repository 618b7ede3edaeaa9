package atm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/quorumq/quorumq/atm/atmapi"
	"github.com/quorumq/quorumq/atm/bank"
	"github.com/quorumq/quorumq/internal/httpjson"
	"github.com/quorumq/quorumq/internal/secure"
)

// errStarting is returned by the API while the node has not joined its group yet.
var errStarting = errors.New("ATM is starting: not joined to the group yet")

// readTimeout bounds reading a request, and an idle keep-alive connection.
const readTimeout = 30 * time.Second

// errBadRequest marks request bodies that are not what the API expects.
var errBadRequest = errors.New("bad request")

// failures maps errors to HTTP codes and reasons, in one place.
var failures = []struct {
	err    error
	code   int
	reason string
}{
	{bank.ErrInsufficientFunds, fiber.StatusConflict, "insufficient_funds"},
	{bank.ErrUnknownAccount, fiber.StatusNotFound, "unknown_account"},
	{bank.ErrInvalidAmount, fiber.StatusBadRequest, "invalid_amount"},
	{bank.ErrAmountSyntax, fiber.StatusBadRequest, "invalid_amount"},
	{bank.ErrAmountNegative, fiber.StatusBadRequest, "invalid_amount"},
	{bank.ErrAmountDecimals, fiber.StatusBadRequest, "invalid_amount"},
	{bank.ErrAmountZero, fiber.StatusBadRequest, "invalid_amount"},
	{bank.ErrAmountTooLarge, fiber.StatusBadRequest, "invalid_amount"},
	{bank.ErrInvalidName, fiber.StatusBadRequest, "invalid_name"},
	{bank.ErrSameAccount, fiber.StatusBadRequest, "same_account"},
	{bank.ErrOverflow, fiber.StatusUnprocessableEntity, "overflow"},
	{bank.ErrStale, fiber.StatusConflict, "stale"},
	{bank.ErrKeyReused, fiber.StatusUnprocessableEntity, "idempotency_key_reused"},
	{bank.ErrInvalidKey, fiber.StatusBadRequest, "invalid_idempotency_key"},
	{bank.ErrMalformed, fiber.StatusInternalServerError, "malformed"},
	{errBadRequest, fiber.StatusBadRequest, "bad_request"},
	{ErrUnavailable, fiber.StatusServiceUnavailable, "unavailable"},
	{errStarting, fiber.StatusServiceUnavailable, "starting"},
}

// Outcomes of a failed write, in the JSON body of every failure of POST /deposit,
// /withdraw and /transfer.
const (
	OutcomeNotApplied = httpjson.OutcomeNotApplied // certainly not applied, and never will be
	OutcomeUnknown    = httpjson.OutcomeUnknown    // may still be applied: retry with the same Idempotency-Key
)

// OutcomeOf tells a failed write's outcome. Only the failures this package decides
// (validation, refusals by the bank, no leader to take it) are known not applied;
// anything else might have reached the Raft log.
func OutcomeOf(err error) string {
	if errors.Is(err, ErrOutcomeUnknown) {
		return OutcomeUnknown
	}
	for _, f := range failures {
		if errors.Is(err, f.err) {
			return OutcomeNotApplied
		}
	}
	return OutcomeUnknown
}

func errorHandler(logger *slog.Logger) fiber.ErrorHandler {
	return func(c *fiber.Ctx, err error) error {
		code, reason := fiber.StatusInternalServerError, "internal"
		var fe *fiber.Error
		if errors.As(err, &fe) {
			code, reason = fe.Code, "http"
		}
		for _, f := range failures {
			if errors.Is(err, f.err) {
				code, reason = f.code, f.reason
				break
			}
		}
		if code >= 500 && reason != "unavailable" && reason != "starting" {
			logger.Error("http request failed", "path", c.Path(), "err", err)
		}
		resp := atmapi.Failure{Status: "failure", Code: reason, Reason: reason, Message: err.Error()}
		switch {
		case c.Method() != fiber.MethodPost:
		case fe != nil:
			resp.Outcome = OutcomeNotApplied // refused by the HTTP layer, before any handler
		default:
			resp.Outcome = OutcomeOf(err)
		}
		return c.Status(code).JSON(resp)
	}
}

// server is the HTTP API over an ATM that may not exist yet: /healthz answers as soon as
// the process listens, because peers find each other through healthy instances before
// the group exists; everything else waits for the node.
type server struct {
	app   *fiber.App
	ready chan struct{}
	atm   *ATM // set once before ready is closed
}

func newServer(logger *slog.Logger, auth *secure.Auth) *server {
	s := &server{ready: make(chan struct{})}
	s.app = fiber.New(fiber.Config{
		DisableStartupMessage: true,
		ErrorHandler:          errorHandler(logger),
		JSONEncoder:           httpjson.Line,
		ReadTimeout:           readTimeout, // and the idle keep-alive timeout: slow clients cannot pile up
	})
	// Tokens: produce moves money, consume reads it (admin does both).
	write, read := auth.Require(secure.RoleProduce, nil), auth.Require(secure.RoleConsume, nil)
	mountMetrics(s, auth.Require("", nil))
	s.app.Get("/healthz", s.healthz)
	s.app.Get("/openapi.json", func(c *fiber.Ctx) error {
		c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSON)
		return c.Send(atmapi.OpenAPI())
	})
	api := s.app.Group("/", s.whenReady)
	api.Post("/deposit", write, s.money((*ATM).Deposit))
	api.Post("/withdraw", write, s.money((*ATM).Withdraw))
	api.Post("/transfer", write, s.transfer)
	api.Get("/balance/:name", read, s.balance)
	api.Get("/accounts", read, s.accounts)
	api.Get("/status", read, s.status)
	return s
}

// healthz passes as long as the process serves; a member recovering from a storage
// fault says so, which Consul keeps as the check's output. A halted member (its binary
// does not know a command in the log) fails it.
func (s *server) healthz(c *fiber.Ctx) error {
	r := atmapi.HealthResponse{Status: "success"}
	if a := s.joined(); a != nil {
		if rec, why := a.node.Recovering(); rec {
			r.Recovering = why
		}
		if halted, why := a.node.Halted(); halted {
			r.Status, r.Message = "failure", why
			return c.Status(fiber.StatusServiceUnavailable).JSON(r)
		}
	}
	return c.JSON(r)
}

func (s *server) serve(ln net.Listener) error { return s.app.Listener(ln) }

func (s *server) shutdown(ctx context.Context) error { return s.app.ShutdownWithContext(ctx) }

func (s *server) setATM(a *ATM) {
	s.atm = a
	close(s.ready)
}

func (s *server) whenReady(c *fiber.Ctx) error {
	if s.joined() == nil {
		if len(c.Request().Header.Peek(IdempotencyKey)) > 0 {
			return outcomeUnknown(errStarting) // an earlier attempt under the key may be applied
		}
		return errStarting
	}
	return c.Next()
}

// parseAmount accepts "12.50" or 12.50; both go through the decimal parser, never a float.
func parseAmount(raw json.RawMessage) (int64, error) {
	if len(raw) == 0 {
		return 0, fmt.Errorf("%w: amount is missing", errBadRequest)
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		s = string(raw)
	}
	return bank.ParseAmount(s)
}

// decodeAmount decodes the body into req, then parses its amount field (which points into req).
func decodeAmount(c *fiber.Ctx, req any, amount *json.RawMessage) (int64, error) {
	if err := json.Unmarshal(c.Body(), req); err != nil {
		return 0, fmt.Errorf("%w: body is not the expected JSON: %v", errBadRequest, err)
	}
	return parseAmount(*amount)
}

func balanceJSON(name string, cents int64) atmapi.BalanceResponse {
	return atmapi.BalanceResponse{Status: "success", Name: name, Balance: bank.FormatAmount(cents), Cents: cents}
}

// IdempotencyKey is the request header whose value makes a write apply at most once.
const IdempotencyKey = "Idempotency-Key"

// idempotencyKey returns the request's key, "" if it has none.
func idempotencyKey(c *fiber.Ctx) (string, error) {
	key := string(c.Request().Header.Peek(IdempotencyKey)) // a copy: Fiber reuses its buffers
	if key == "" {
		return "", nil
	}
	return key, bank.ValidKey(key)
}

// money serves deposit and withdraw, which differ only in the ATM operation.
func (s *server) money(op moneyOp) fiber.Handler {
	return func(c *fiber.Ctx) error {
		var req atmapi.MoneyRequest
		cents, err := decodeAmount(c, &req, &req.Amount)
		if err != nil {
			return err
		}
		key, err := idempotencyKey(c)
		if err != nil {
			return err
		}
		bal, err := op(s.atm, c.UserContext(), key, req.Name, cents)
		if err != nil {
			return err
		}
		return c.JSON(balanceJSON(req.Name, bal))
	}
}

func (s *server) transfer(c *fiber.Ctx) error {
	var req atmapi.TransferRequest
	cents, err := decodeAmount(c, &req, &req.Amount)
	if err != nil {
		return err
	}
	key, err := idempotencyKey(c)
	if err != nil {
		return err
	}
	from, to, err := s.atm.Transfer(c.UserContext(), key, req.From, req.To, cents)
	if err != nil {
		return err
	}
	return c.JSON(atmapi.TransferResponse{Status: "success", From: req.From, To: req.To,
		FromBalance: bank.FormatAmount(from), ToBalance: bank.FormatAmount(to), FromCents: from, ToCents: to})
}

func (s *server) balance(c *fiber.Ctx) error {
	name, err := url.PathUnescape(c.Params("name")) // also copies: Fiber reuses its buffers
	if err != nil {
		return fmt.Errorf("%w: %v", errBadRequest, err)
	}
	bal, err := s.atm.Balance(c.UserContext(), name)
	if err != nil {
		return err
	}
	return c.JSON(balanceJSON(name, bal))
}

func (s *server) accounts(c *fiber.Ctx) error {
	accounts, err := s.atm.Accounts(c.UserContext())
	if err != nil {
		return err
	}
	resp := atmapi.AccountsResponse{Status: "success", Accounts: make([]atmapi.AccountJSON, 0, len(accounts))}
	for _, a := range accounts {
		resp.Accounts = append(resp.Accounts, atmapi.AccountJSON{Name: a.Name, Balance: bank.FormatAmount(a.Cents), Cents: a.Cents})
		resp.TotalCents += a.Cents
	}
	resp.Total = bank.FormatAmount(resp.TotalCents)
	return c.JSON(resp)
}

func (s *server) status(c *fiber.Ctx) error {
	st := s.atm.Status(c.UserContext())
	return c.JSON(atmapi.StatusResponse{Status: "success", ID: st.ID, State: st.State, Leader: st.Leader,
		Applied: st.Applied, Members: st.Members, Stale: st.Stale, Recovering: st.Recovering})
}
