package manager

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/gofiber/fiber/v2"

	"github.com/quorumq/quorumq/election"
	"github.com/quorumq/quorumq/manager/managerapi"
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
	return fail(http.StatusBadRequest, managerapi.CodeInvalid, format, args...)
}

// errNotReady is answered until this manager has joined its Raft group.
var errNotReady = fail(http.StatusServiceUnavailable, managerapi.CodeUnavailable, "manager is starting: not in the managers' group yet")

// metaStatus maps the state machine's refusals to HTTP.
var metaStatus = map[meta.Code]struct {
	status int
	code   string
}{
	meta.CodeInvalid:          {http.StatusBadRequest, managerapi.CodeInvalid},
	meta.CodeUnknownTopic:     {http.StatusNotFound, managerapi.CodeUnknownTopic},
	meta.CodeUnknownPartition: {http.StatusNotFound, managerapi.CodeNotFound},
	meta.CodeUnknownBroker:    {http.StatusNotFound, managerapi.CodeUnknownBroker},
	meta.CodeTopicExists:      {http.StatusConflict, managerapi.CodeTopicExists},
	meta.CodeConflict:         {http.StatusConflict, managerapi.CodeConflict},
	meta.CodeUnavailable:      {http.StatusServiceUnavailable, managerapi.CodeUnavailable},
	meta.CodeKeyReused:        {http.StatusUnprocessableEntity, managerapi.CodeKeyReused},
}

// errorHandler is the one place errors become HTTP replies.
func errorHandler(logger *slog.Logger) fiber.ErrorHandler {
	return func(c *fiber.Ctx, err error) error {
		f := managerapi.Failure{Status: "failure", Message: err.Error()}
		status := http.StatusInternalServerError
		var ae *apiError
		var me *meta.Error
		var fe *fiber.Error
		var be *brokerError
		switch {
		case errors.As(err, &ae):
			status, f.Code = ae.status, ae.code
		case errors.As(err, &be) && be.earliest != nil:
			// Below the partition's first offset: the client reads on from there.
			status, f.Code, f.EarliestOffset = http.StatusGone, managerapi.CodeOffsetGone, be.earliest
			f.Message = be.msg
		case errors.As(err, &be):
			status, f.Code = http.StatusServiceUnavailable, managerapi.CodeUnavailable
			if be.clientFault() {
				// The broker's words without its status, which the reply carries.
				status, f.Code = be.status, managerapi.CodeInvalid
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
				f.Code = managerapi.CodeNotFound
			}
		case errors.Is(err, election.ErrNoLeader), errors.Is(err, election.ErrClosed),
			errors.Is(err, context.DeadlineExceeded):
			status, f.Code = http.StatusServiceUnavailable, managerapi.CodeUnavailable
			f.Message = "no write manager reachable right now (no quorum?): " + err.Error()
		case errors.Is(err, election.ErrUnknownOutcome):
			status, f.Code = http.StatusServiceUnavailable, managerapi.CodeUnavailable
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
