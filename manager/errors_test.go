package manager

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gofiber/fiber/v2"

	"github.com/quorumq/quorumq/election"
	"github.com/quorumq/quorumq/internal/httpjson"
	"github.com/quorumq/quorumq/manager/managerapi"
	"github.com/quorumq/quorumq/manager/meta"
)

// reply runs err through the error handler of a manager's app and returns the status
// and the decoded failure.
func reply(t *testing.T, method string, err error) (int, managerapi.Failure) {
	t.Helper()
	app := fiber.New(fiber.Config{ErrorHandler: errorHandler(slog.New(slog.DiscardHandler)), JSONEncoder: httpjson.Line})
	app.Post("/x", writeEndpoint, func(*fiber.Ctx) error { return err })
	app.Get("/x", func(*fiber.Ctx) error { return err })
	resp, terr := app.Test(httptest.NewRequest(method, "/x", nil))
	if terr != nil {
		t.Fatal(terr)
	}
	raw, _ := io.ReadAll(resp.Body)
	var f managerapi.Failure
	if err := json.Unmarshal(raw, &f); err != nil {
		t.Fatalf("reply %q: %v", raw, err)
	}
	return resp.StatusCode, f
}

// TestBrokerRefusalPassedOnOnce: a broker's refusal of what the client sent reaches
// the client with the broker's status, which its message does not repeat.
func TestBrokerRefusalPassedOnOnce(t *testing.T) {
	status, f := reply(t, "POST", &brokerError{broker: "b1", status: 413, msg: "message 0 is 5 bytes; the limit is 4"})
	if status != 413 || f.Code != managerapi.CodeInvalid || f.Message != "broker b1: message 0 is 5 bytes; the limit is 4" {
		t.Fatalf("got %d %+v", status, f)
	}
	if strings.Contains(f.Message, "HTTP") {
		t.Fatalf("message names the status: %q", f.Message)
	}
}

// TestOutcomes: a write's failure says not_applied only when nothing can have changed.
func TestOutcomes(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want string
	}{
		{"bad request", badRequest("nope"), managerapi.OutcomeNotApplied},
		{"state machine refusal", &meta.Error{Code: meta.CodeTopicExists, Msg: "exists"}, managerapi.OutcomeNotApplied},
		{"no leader", fmt.Errorf("group: %w", election.ErrNoLeader), managerapi.OutcomeNotApplied},
		{"leader lost under the command", fmt.Errorf("%w: leadership lost", election.ErrUnknownOutcome), managerapi.OutcomeUnknown},
		{"no leader after an unknown outcome", fmt.Errorf("%w; %w", election.ErrNoLeader, election.ErrUnknownOutcome), managerapi.OutcomeUnknown},
		{"timeout", context.DeadlineExceeded, managerapi.OutcomeUnknown},
		{"closed", election.ErrClosed, managerapi.OutcomeUnknown},
		{"broker unreachable", &brokerError{status: 502, unreachable: true}, managerapi.OutcomeNotApplied},
		{"broker not leader", &brokerError{status: 421}, managerapi.OutcomeNotApplied},
		{"broker says unknown", &brokerError{status: 503, msg: "leadership lost", outcome: managerapi.OutcomeUnknown}, managerapi.OutcomeUnknown},
		{"broker says not applied", &brokerError{status: 503, outcome: managerapi.OutcomeNotApplied}, managerapi.OutcomeNotApplied},
		{"broker timeout", &brokerError{status: 502, msg: "context deadline exceeded"}, managerapi.OutcomeUnknown},
		{"failure before the command", beforeApply(context.DeadlineExceeded), managerapi.OutcomeNotApplied},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, f := reply(t, "POST", tc.err); f.Outcome != tc.want {
				t.Fatalf("write: outcome %q, want %q (%+v)", f.Outcome, tc.want, f)
			}
			if _, f := reply(t, "GET", tc.err); f.Outcome != "" {
				t.Fatalf("read: outcome %q, want none", f.Outcome)
			}
		})
	}
}
