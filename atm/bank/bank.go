// Package bank is the ATM network's replicated state machine: accounts holding integer
// cents, and deposit/withdraw/transfer decided inside Apply so every replica refuses the
// same commands the same way. It is plain Go: hashicorp/raft only supplies the FSM types.
package bank

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math"
	"slices"
	"strings"
	"sync"

	"github.com/hashicorp/raft"
)

// Bank implements raft.FSM. Reads (Balance, Accounts) may run concurrently with Apply.
type Bank struct {
	mu       sync.RWMutex
	accounts map[string]int64
	sessions map[string]session
}

// session is the exactly-once table entry of one ATM lane: the last batch applied and
// its encoded result, returned as-is when that batch is retried.
type session struct {
	Seq    uint64 `json:"seq"`
	Result []byte `json:"result"`
}

// Account is one account as read from the bank.
type Account struct {
	Name  string
	Cents int64
}

// New returns an empty bank.
func New() *Bank {
	return &Bank{accounts: map[string]int64{}, sessions: map[string]session{}}
}

// Apply applies one entry and returns its encoded BatchResult ([]byte, as the election
// package expects). It never fails: a bad entry yields a refusal result.
func (b *Bank) Apply(l *raft.Log) interface{} {
	return b.apply(l.Data)
}

// apply decodes before taking the lock: decoding touches no state, and readers
// (Balance, Accounts) wait only for the state change.
func (b *Bank) apply(data []byte) []byte {
	batch, err := DecodeBatch(data)
	if err != nil || batch.Session == "" {
		return BatchResult{Code: CodeMalformed}.Encode()
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	last, seen := b.sessions[batch.Session]
	switch {
	case seen && batch.Seq == last.Seq:
		return last.Result
	case seen && batch.Seq < last.Seq:
		return BatchResult{Code: CodeStale}.Encode()
	}
	res := BatchResult{Results: make([]Result, len(batch.Ops))}
	for i, op := range batch.Ops {
		res.Results[i] = b.applyOp(op)
	}
	enc := res.Encode()
	b.sessions[batch.Session] = session{Seq: batch.Seq, Result: enc}
	return enc
}

func (b *Bank) applyOp(op Op) Result {
	if ValidName(op.Account) != nil {
		return Result{Code: CodeInvalidName}
	}
	if op.Amount <= 0 {
		return Result{Code: CodeInvalidAmount}
	}
	bal, exists := b.accounts[op.Account]
	switch op.Kind {
	case KindDeposit:
		if bal > math.MaxInt64-op.Amount {
			return Result{Code: CodeOverflow, Balance: bal}
		}
		b.accounts[op.Account] = bal + op.Amount
		return Result{Balance: bal + op.Amount}
	case KindWithdraw:
		if !exists {
			return Result{Code: CodeUnknownAccount}
		}
		if bal < op.Amount {
			return Result{Code: CodeInsufficientFunds, Balance: bal}
		}
		b.accounts[op.Account] = bal - op.Amount
		return Result{Balance: bal - op.Amount}
	case KindTransfer, KindTransferOpen:
		if ValidName(op.To) != nil {
			return Result{Code: CodeInvalidName}
		}
		if op.To == op.Account {
			return Result{Code: CodeSameAccount}
		}
		to, toExists := b.accounts[op.To]
		if !exists || !toExists && op.Kind == KindTransfer {
			return Result{Code: CodeUnknownAccount}
		}
		if bal < op.Amount {
			return Result{Code: CodeInsufficientFunds, Balance: bal, ToBalance: to}
		}
		if to > math.MaxInt64-op.Amount {
			return Result{Code: CodeOverflow, Balance: bal, ToBalance: to}
		}
		b.accounts[op.Account] = bal - op.Amount
		b.accounts[op.To] = to + op.Amount
		return Result{Balance: bal - op.Amount, ToBalance: to + op.Amount}
	}
	return Result{Code: CodeMalformed}
}

// Balance returns the local balance of name and whether the account exists.
func (b *Bank) Balance(name string) (int64, bool) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	c, ok := b.accounts[name]
	return c, ok
}

// Accounts returns every account, sorted by name.
func (b *Bank) Accounts() []Account {
	b.mu.RLock()
	out := make([]Account, 0, len(b.accounts))
	for name, c := range b.accounts {
		out = append(out, Account{Name: name, Cents: c})
	}
	b.mu.RUnlock()
	slices.SortFunc(out, func(x, y Account) int { return strings.Compare(x.Name, y.Name) })
	return out
}

// snapshotV1 is the persisted form; Version lets a later layout be told apart.
type snapshotV1 struct {
	Version  int                `json:"version"`
	Accounts map[string]int64   `json:"accounts"`
	Sessions map[string]session `json:"sessions"`
}

// Snapshot captures the state (a copy, so Apply can go on while it is persisted).
func (b *Bank) Snapshot() (raft.FSMSnapshot, error) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	// Result slices are never mutated after Apply, so the sessions' copy may share them.
	return &snapshotV1{Version: 1, Accounts: maps.Clone(b.accounts), Sessions: maps.Clone(b.sessions)}, nil
}

// Persist writes the snapshot as JSON.
func (s *snapshotV1) Persist(sink raft.SnapshotSink) error {
	if err := json.NewEncoder(sink).Encode(s); err != nil {
		sink.Cancel()
		return fmt.Errorf("bank snapshot: %w", err)
	}
	return sink.Close()
}

// Release is a no-op: the snapshot holds only its own copy.
func (s *snapshotV1) Release() {}

// Restore replaces all state with a snapshot's.
func (b *Bank) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	var s snapshotV1
	if err := json.NewDecoder(rc).Decode(&s); err != nil {
		return fmt.Errorf("bank restore: %w", err)
	}
	if s.Version != 1 {
		return fmt.Errorf("bank restore: unknown snapshot version %d", s.Version)
	}
	if s.Accounts == nil {
		s.Accounts = map[string]int64{}
	}
	if s.Sessions == nil {
		s.Sessions = map[string]session{}
	}
	b.mu.Lock()
	b.accounts, b.sessions = s.Accounts, s.Sessions
	b.mu.Unlock()
	return nil
}
