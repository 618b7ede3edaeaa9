// Package nemesis is quorumq's fault suite: real processes (managers, brokers,
// PostgreSQL and Consul for the queue; three ATMs for the bank) under network
// partitions, one-way cuts, SIGKILL and SIGSTOP, while clients produce and consume or
// move money. What the clients saw is kept as a history and checked at the end with
// clock-independent checks: the queue lost, duplicated, reordered or invented nothing;
// the bank's history is linearizable, conserves money and never shows a negative
// balance. A failing history is saved to a file that the checkers replay.
//
// `make nemesis NEMESIS_FLAGS='--duration 10m --faults partition,kill,pause'` runs it
// for as long as asked (see nemesis_test.go); `make test` runs a short seeded version.
package nemesis

import (
	"encoding/json"
	"fmt"
	"os"
)

// Send is one record a producer tried to send. Acked: the producer was told it is
// stored at Partition/Offset; otherwise the outcome is unknown (the record may be
// stored or not, but at most once).
type Send struct {
	Value     string `json:"value"`
	Producer  int    `json:"producer"`
	Seq       int    `json:"seq"` // the producer's count: its records go out in this order
	Acked     bool   `json:"acked"`
	Partition int    `json:"partition"`
	Offset    int64  `json:"offset"`
	Err       string `json:"err,omitempty"`
}

// Delivery is one message a consumer received.
type Delivery struct {
	Consumer  int    `json:"consumer"`
	Partition int    `json:"partition"`
	Offset    int64  `json:"offset"`
	Value     string `json:"value"`
}

// QueueHistory is what the queue's clients saw, and the partitions' contents read
// once every fault was healed.
type QueueHistory struct {
	Sends      []Send     `json:"sends"`
	Deliveries []Delivery `json:"deliveries"`
	// Log is each partition's messages from offset 0, read at the end.
	Log map[int][]string `json:"log"`
}

// BankOp is one ATM request and what its client saw.
type BankOp struct {
	Client int    `json:"client"` // operations of one client never overlap
	Kind   string `json:"kind"`   // deposit, withdraw, transfer, balance, accounts
	Acct   int    `json:"acct"`   // the account (transfer: the source)
	To     int    `json:"to,omitempty"`
	Amount int64  `json:"amount,omitempty"` // cents
	Call   int64  `json:"call"`             // ns since the start, when the request left
	Return int64  `json:"return"`           // ns, when the answer came; unknown: never
	// Outcome: one of the Outcome constants.
	Outcome  string  `json:"outcome"`
	Attempts int     `json:"attempts"`           // requests sent: a write with an unknown outcome is retried under its Idempotency-Key
	Err      string  `json:"err,omitempty"`      // the last failed attempt's error
	Balance  int64   `json:"balance,omitempty"`  // deposit, withdraw, balance: the account after
	ToBal    int64   `json:"to_bal,omitempty"`   // transfer: the destination after
	Balances []int64 `json:"balances,omitempty"` // accounts
}

// Outcomes of a BankOp.
const (
	OutcomeOK         = "ok"
	OutcomeRefused    = "refused"     // insufficient funds
	OutcomeNotApplied = "not_applied" // any other refusal, or a failure saying not_applied: certainly no effect
	OutcomeUnknown    = "unknown"     // still no answer, or outcome unknown, after the retries: it may take effect later
)

// BankRound is one stretch of the bank's history: it starts from the balances Start
// (read while quiet) and ends with every request answered or given up, the faults
// healed, and the balances End read from every ATM.
type BankRound struct {
	Start []int64   `json:"start"`
	Ops   []BankOp  `json:"ops"`
	End   [][]int64 `json:"end"` // per ATM
}

// History is a whole run, as saved for replay.
type History struct {
	Seed   int64         `json:"seed"`
	Faults []string      `json:"faults"` // each fault as printed
	Queue  *QueueHistory `json:"queue,omitempty"`
	Bank   []BankRound   `json:"bank,omitempty"`
}

// Save writes h as JSON to path.
func (h *History) Save(path string) error {
	b, err := json.MarshalIndent(h, "", " ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}

// Load reads a history written by Save.
func Load(path string) (*History, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var h History
	if err := json.Unmarshal(b, &h); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &h, nil
}
