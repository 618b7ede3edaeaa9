// Package httpjson is the JSON encoder of every quorumq HTTP API (managers, brokers,
// ATMs): a reply ends with a newline, so replies printed one after another (curl in a
// shell) stay apart.
package httpjson

import (
	"cmp"
	"encoding/json"
	"io"
	"net/http"
	"strings"
)

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

// failureBody is a *Failure, or a reply type that embeds Failure.
type failureBody interface{ failure() *Failure }

func (f *Failure) failure() *Failure { return f }

// DecodeFailure reads the body of a failed reply (status not 2xx) into f, a *Failure or
// a type embedding Failure. A body that is not a failure in this shape (a proxy's page,
// a server that died mid-reply) still yields one: its text, or the status text, is the
// message. Code is filled from Reason for the ATMs' older replies.
func DecodeFailure(status int, body []byte, f failureBody) {
	_ = json.Unmarshal(body, f) // a foreign body: the fallbacks below
	b := f.failure()
	b.Status = "failure"
	b.Code = cmp.Or(b.Code, b.Reason)
	if b.Message == "" {
		b.Message = strings.TrimSpace(string(body))
	}
	if b.Message == "" {
		b.Message = http.StatusText(status)
	}
}

// Do sends req with c and reads the whole reply into body. A reply whose status is not
// 200 OK is a failure, decoded into f (DecodeFailure): the caller turns it into its
// own error from resp.StatusCode and f. err is only a failure to exchange the request.
func Do(c *http.Client, req *http.Request, f failureBody) (resp *http.Response, body []byte, err error) {
	resp, err = c.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	if body, err = io.ReadAll(resp.Body); err != nil {
		return nil, nil, err
	}
	if resp.StatusCode != http.StatusOK {
		DecodeFailure(resp.StatusCode, body, f)
	}
	return resp, body, nil
}
