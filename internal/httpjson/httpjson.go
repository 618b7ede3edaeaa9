// Package httpjson is the JSON encoder of every quorumq HTTP API (managers, brokers,
// ATMs): a reply ends with a newline, so replies printed one after another (curl in a
// shell) stay apart.
package httpjson

import "encoding/json"

// Line encodes v as JSON followed by a newline.
func Line(v any) ([]byte, error) {
	b, err := json.Marshal(v)
	return append(b, '\n'), err
}

// Failure is the body of every failed request on every quorumq HTTP API (managers,
// brokers, ATMs): {"status":"failure","message":...} plus a machine-readable code.
// Each service's API package names its codes (managerapi, brokerapi, atmapi).
type Failure struct {
	Status  string `json:"status"` // always "failure"
	Message string `json:"message"`
	// Code is a stable word for the kind of failure, for programs that act on it.
	Code string `json:"code,omitempty"`
	// Reason repeats Code on the ATMs' replies, which named it "reason" before the
	// services shared one shape; scripts written against them keep working.
	Reason string `json:"reason,omitempty"`
	// Outcome, on the failure of a request that changes state, says whether it was
	// certainly not applied (OutcomeNotApplied) or may have been, now or later
	// (OutcomeUnknown). Retry an unknown outcome with the same idempotency key.
	Outcome string `json:"outcome,omitempty"`
	// EarliestOffset, on the 410 of a read below a partition's first offset
	// (CodeOffsetGone: retention deleted those messages), is where it starts now.
	EarliestOffset *uint64 `json:"earliest_offset,omitempty"`
}

// CodeOffsetGone marks the 410 of a read below the first offset a partition keeps.
const CodeOffsetGone = "offset_gone"

// The values of Failure.Outcome.
const (
	OutcomeNotApplied = "not_applied"
	OutcomeUnknown    = "unknown"
)
