package manager

import (
	"errors"

	"github.com/gofiber/fiber/v2"

	"github.com/quorumq/quorumq/election"
	"github.com/quorumq/quorumq/manager/managerapi"
	"github.com/quorumq/quorumq/manager/meta"
)

// Truthful outcomes (issue 13): every failure of a write endpoint says whether the
// request certainly changed nothing (not_applied) or may have (unknown). Only what
// proves the command never reached a Raft log — a refusal before it, the state
// machine's own refusal, no leader found, a broker that was never reached or that
// says so — is not_applied; everything else, a timeout above all, is unknown.

// localWrite marks the requests of write endpoints in Fiber's locals.
const localWrite = "quorumq.write"

// writeEndpoint marks a route as a write: its failures carry an outcome.
func writeEndpoint(c *fiber.Ctx) error {
	c.Locals(localWrite, true)
	return c.Next()
}

// outcomeError fixes the outcome of err where the handler knows better than the
// error's kind: before anything was sent.
type outcomeError struct {
	error
	outcome string
}

func (e *outcomeError) Unwrap() error { return e.error }

// beforeApply marks an error met before the request's command was sent anywhere.
func beforeApply(err error) error {
	if err == nil {
		return nil
	}
	return &outcomeError{err, managerapi.OutcomeNotApplied}
}

// outcomeOf says whether the request that failed with err may have been applied.
func outcomeOf(err error) string {
	var oe *outcomeError
	var ae *apiError
	var me *meta.Error
	var fe *fiber.Error
	var be *brokerError
	switch {
	case errors.As(err, &oe):
		return oe.outcome
	case errors.Is(err, election.ErrUnknownOutcome):
		return managerapi.OutcomeUnknown
	case errors.As(err, &be):
		if be.notApplied() {
			return managerapi.OutcomeNotApplied
		}
		return managerapi.OutcomeUnknown
	case errors.As(err, &me), errors.As(err, &fe), errors.As(err, &ae), errors.Is(err, election.ErrNoLeader):
		return managerapi.OutcomeNotApplied
	}
	return managerapi.OutcomeUnknown
}

// notApplied reports whether the broker certainly did not act on the request: it says
// so, or (a broker that does not say) it was never reached, pointed elsewhere, had no
// leader or replica, or refused what was sent.
func (e *brokerError) notApplied() bool {
	if e.outcome != "" {
		return e.outcome == managerapi.OutcomeNotApplied
	}
	return retryElsewhere(e) || e.clientFault()
}
