package manager

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/gofiber/fiber/v2"

	"github.com/quorumq/quorumq/election"
	"github.com/quorumq/quorumq/manager/meta"
)

// apiError is a failure the HTTP layer reports as it is.
type apiError struct {
	status int
	code   string
	msg    string
}

func (e *apiError) Error() string { return e.msg }

func fail(status int, code, format string, args ...any) *apiError {
	return &apiError{status: status, code: code, msg: fmt.Sprintf(format, args...)}
}

func badRequest(format string, args ...any) *apiError {
	return fail(http.StatusBadRequest, CodeInvalid, format, args...)
}

// errNotReady is answered until this manager has joined its Raft group.
var errNotReady = fail(http.StatusServiceUnavailable, CodeUnavailable, "manager is starting: not in the managers' group yet")

// metaStatus maps the state machine's refusals to HTTP.
var metaStatus = map[meta.Code]struct {
	status int
	code   string
}{
	meta.CodeInvalid:          {http.StatusBadRequest, CodeInvalid},
	meta.CodeUnknownTopic:     {http.StatusNotFound, CodeUnknownTopic},
	meta.CodeUnknownPartition: {http.StatusNotFound, CodeNotFound},
	meta.CodeUnknownBroker:    {http.StatusNotFound, CodeUnknownBroker},
	meta.CodeTopicExists:      {http.StatusConflict, CodeTopicExists},
	meta.CodeConflict:         {http.StatusConflict, CodeConflict},
	meta.CodeUnavailable:      {http.StatusServiceUnavailable, CodeUnavailable},
	meta.CodeKeyReused:        {http.StatusUnprocessableEntity, CodeKeyReused},
}

// errorHandler is the one place errors become HTTP replies.
func errorHandler(logger *slog.Logger) fiber.ErrorHandler {
	return func(c *fiber.Ctx, err error) error {
		f := Failure{Status: "failure", Message: err.Error()}
		status := http.StatusInternalServerError
		var ae *apiError
		var me *meta.Error
		var fe *fiber.Error
		var be *brokerError
		switch {
		case errors.As(err, &ae):
			status, f.Code = ae.status, ae.code
		case errors.As(err, &be):
			status, f.Code = http.StatusServiceUnavailable, CodeUnavailable
			if be.clientFault() {
				// The broker's words without its status, which the reply carries.
				status, f.Code = be.status, CodeInvalid
				f.Message = "broker " + be.broker + ": " + be.msg
			} else {
				f.Message = "the partition cannot be served right now, retry: " + err.Error()
			}
		case errors.As(err, &me):
			m, ok := metaStatus[me.Code]
			if ok {
				status, f.Code = m.status, m.code
			}
		case errors.As(err, &fe):
			status = fe.Code
			if status == http.StatusNotFound {
				f.Code = CodeNotFound
			}
		case errors.Is(err, election.ErrNoLeader), errors.Is(err, election.ErrClosed),
			errors.Is(err, context.DeadlineExceeded):
			status, f.Code = http.StatusServiceUnavailable, CodeUnavailable
			f.Message = "no write manager reachable right now (no quorum?): " + err.Error()
		case errors.Is(err, election.ErrUnknownOutcome):
			status, f.Code = http.StatusServiceUnavailable, CodeUnavailable
		}
		if c.Locals(localWrite) != nil {
			f.Outcome = outcomeOf(err)
		}
		if status >= 500 && ae == nil {
			logger.Warn("request failed", "method", c.Method(), "path", c.Path(), "status", status, "err", err)
		}
		return c.Status(status).JSON(f)
	}
}
