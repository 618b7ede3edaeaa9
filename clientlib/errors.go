package clientlib

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/quorumq/quorumq/manager/managerapi"
)

// Errors a caller can act on. Replies of the managers are mapped to these (wrapped in
// an *APIError that keeps the status and text), so errors.Is works on every result.
var (
	ErrUnknownTopic    = errors.New("quorumq: unknown topic")
	ErrUnknownProducer = errors.New("quorumq: unknown producer")
	ErrUnknownConsumer = errors.New("quorumq: unknown consumer")
	ErrTopicExists     = errors.New("quorumq: topic already exists")
	// ErrOffsetGone is a read (ReadAt) below the first offset a partition keeps:
	// retention deleted those messages; the message names the earliest offset.
	ErrOffsetGone = errors.New("quorumq: offset deleted by retention")
	// ErrNoMessage means the consumer has read everything there is for now.
	ErrNoMessage = errors.New("quorumq: no message")
	// ErrDiscovery wraps a failure of discovery (e.g. Consul unreachable) before any
	// manager was known.
	ErrDiscovery = errors.New("quorumq: finding managers")
	// ErrNoManagers means discovery returned no manager to talk to.
	ErrNoManagers = errors.New("quorumq: no manager found")
	// ErrClosed is returned by a Producer after Close.
	ErrClosed = errors.New("quorumq: producer closed")

	// A failed write (create, grow, register, produce, consume) matches one of these:
	// ErrNotApplied when it certainly changed nothing, ErrOutcomeUnknown when it may
	// have taken effect (now or later): a reply was lost, or a manager or broker said
	// so. The SDK's own retries are safe either way (same Idempotency-Key, seq or
	// offset); a caller that tries again on its own should check first.
	ErrNotApplied     = errors.New("quorumq: not applied")
	ErrOutcomeUnknown = errors.New("quorumq: outcome unknown (it may have been applied)")
)

// The values of the failure replies' "outcome".
const (
	outcomeNotApplied = managerapi.OutcomeNotApplied
	outcomeUnknown    = managerapi.OutcomeUnknown
)

// APIError is a failure reply of a manager: {"status":"failure","message":...}.
type APIError struct {
	Status  int    // HTTP status code
	Message string // the manager's message
	// Err is the sentinel this reply maps to (ErrUnknownTopic, ...), or nil.
	Err error
	// Outcome is the reply's "outcome" for a failed write: "not_applied", "unknown",
	// or "" (a read, or a manager that does not say).
	Outcome string
}

func (e *APIError) Error() string {
	code := fmt.Sprintf("(HTTP %d)", e.Status)
	if strings.HasSuffix(e.Message, code) { // a manager that passed on a broker's error as it printed it
		return "quorumq: " + e.Message
	}
	return "quorumq: " + e.Message + " " + code
}

// Unwrap lets errors.Is(err, ErrUnknownTopic) see through the APIError.
func (e *APIError) Unwrap() error { return e.Err }

// retryable reports whether another attempt (perhaps on another manager) may succeed:
// the manager is down, overloaded, between leaders, or not the one that can answer.
func (e *APIError) retryable() bool {
	if e.Status >= 500 || e.Status == http.StatusTooManyRequests || e.Status == http.StatusMisdirectedRequest {
		return true
	}
	m := strings.ToLower(e.Message)
	return strings.Contains(m, "not leader") || strings.Contains(m, "no leader") || strings.Contains(m, "not the leader")
}

// newAPIError maps a failure reply to its sentinel by its "code" (manager.Code*); a
// reply without a code (the seed's API had none) is mapped by its words.
func newAPIError(status int, message, code, outcome string) *APIError {
	e := &APIError{Status: status, Message: message, Outcome: outcome}
	switch code {
	case "unknown_topic":
		e.Err = ErrUnknownTopic
	case "unknown_producer":
		e.Err = ErrUnknownProducer
	case "unknown_consumer":
		e.Err = ErrUnknownConsumer
	case "topic_exists":
		e.Err = ErrTopicExists
	case "no_message":
		e.Err = ErrNoMessage
	case managerapi.CodeOffsetGone:
		e.Err = ErrOffsetGone
	}
	if code != "" || status >= 500 { // a manager that sends codes means exactly them
		return e
	}
	m := strings.ToLower(message)
	missing := status == http.StatusNotFound || strings.Contains(m, "not found") ||
		strings.Contains(m, "unknown") || strings.Contains(m, "does not exist") || strings.Contains(m, "no such")
	switch {
	case status == http.StatusConflict || strings.Contains(m, "already exists"):
		if strings.Contains(m, "topic") || status == http.StatusConflict {
			e.Err = ErrTopicExists
		}
	case strings.Contains(m, "no message") || strings.Contains(m, "no new message") || strings.Contains(m, "no more message") ||
		(status == http.StatusNotFound && strings.Contains(m, "empty")):
		e.Err = ErrNoMessage
	case missing && strings.Contains(m, "producer"):
		e.Err = ErrUnknownProducer
	case missing && strings.Contains(m, "consumer"):
		e.Err = ErrUnknownConsumer
	case missing && strings.Contains(m, "topic"):
		e.Err = ErrUnknownTopic
	}
	return e
}
