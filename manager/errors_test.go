package manager

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gofiber/fiber/v2"

	"github.com/quorumq/quorumq/broker"
)

// reply runs err through the error handler of a manager's app and returns the status
// and the decoded failure.
func reply(t *testing.T, method string, err error) (int, Failure) {
	t.Helper()
	app := fiber.New(fiber.Config{ErrorHandler: errorHandler(slog.New(slog.DiscardHandler)), JSONEncoder: broker.JSONLine})
	app.All("/x", func(*fiber.Ctx) error { return err })
	resp, terr := app.Test(httptest.NewRequest(method, "/x", nil))
	if terr != nil {
		t.Fatal(terr)
	}
	raw, _ := io.ReadAll(resp.Body)
	var f Failure
	if err := json.Unmarshal(raw, &f); err != nil {
		t.Fatalf("reply %q: %v", raw, err)
	}
	return resp.StatusCode, f
}

// TestBrokerRefusalPassedOnOnce: a broker's refusal of what the client sent reaches
// the client with the broker's status, which its message does not repeat.
func TestBrokerRefusalPassedOnOnce(t *testing.T) {
	status, f := reply(t, "POST", &brokerError{broker: "b1", status: 413, msg: "message 0 is 5 bytes; the limit is 4"})
	if status != 413 || f.Code != CodeInvalid || f.Message != "broker b1: message 0 is 5 bytes; the limit is 4" {
		t.Fatalf("got %d %+v", status, f)
	}
	if strings.Contains(f.Message, "HTTP") {
		t.Fatalf("message names the status: %q", f.Message)
	}
}
