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
	"time"

	"github.com/hashicorp/raft"
)

// Idempotency keys are remembered for KeyRetention of the time the keyed batches carry,
// and at most MaxKeys of them (the oldest are forgotten first).
const (
	KeyRetention = 15 * time.Minute
	MaxKeys      = 100_000
)

// Bank implements raft.FSM. Reads (Balance, Accounts) may run concurrently with Apply.
type Bank struct {
	mu       sync.RWMutex
	accounts map[string]int64
	sessions map[string]session
	keys     map[string]*keyEntry
	order    []*keyEntry // keys oldest first from head; the expiry queue
	head     int
	now      int64 // the latest Time of a keyed batch: the bank's clock
}

// keyEntry is the first op applied under an idempotency key and what it answered.
type keyEntry struct {
	Op     Op     `json:"op"`
	Result Result `json:"result"`
	At     int64  `json:"at"` // the bank's clock when it was applied
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
	return &Bank{accounts: map[string]int64{}, sessions: map[string]session{}, keys: map[string]*keyEntry{}}
}

// Apply applies one entry and returns its encoded BatchResult ([]byte, as the election
// package expects). It never fails: a bad entry yields a refusal result.
func (b *Bank) Apply(l *raft.Log) interface{} {
	return b.apply(l.Data)
}

// CheckCommand implements election.CommandChecker with CheckEntry.
func (b *Bank) CheckCommand(data []byte) error { return CheckEntry(data) }

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
	if batch.keyed() {
		b.tick(batch.Time)
	}
	res := BatchResult{Results: make([]Result, len(batch.Ops))}
	for i, op := range batch.Ops {
		res.Results[i] = b.applyKeyed(op)
	}
	enc := res.Encode()
	b.sessions[batch.Session] = session{Seq: batch.Seq, Result: enc}
	return enc
}

// applyKeyed applies op once per idempotency key: a later op with the same key gets the
// first one's result, or CodeKeyReused if it asks for something else.
func (b *Bank) applyKeyed(op Op) Result {
	if op.Key == "" {
		return b.applyOp(op)
	}
	if e, ok := b.keys[op.Key]; ok {
		if e.Op != op {
			return Result{Code: CodeKeyReused}
		}
		return e.Result
	}
	res := b.applyOp(op)
	e := &keyEntry{Op: op, Result: res, At: b.now}
	b.keys[op.Key] = e
	b.order = append(b.order, e)
	if len(b.keys) > MaxKeys {
		b.forgetOldest()
	}
	return res
}

// tick moves the bank's clock to t (never back, so a slow ATM clock expires nothing)
// and forgets the keys older than KeyRetention.
func (b *Bank) tick(t int64) {
	b.now = max(b.now, t)
	for b.head < len(b.order) && b.order[b.head].At < b.now-int64(KeyRetention) {
		b.forgetOldest()
	}
}

func (b *Bank) forgetOldest() {
	delete(b.keys, b.order[b.head].Op.Key)
	b.order[b.head] = nil
	b.head++
	// Reclaim the queue's dead front once it is most of the slice.
	if b.head > len(b.order)/2 && b.head > 1024 {
		b.order = append([]*keyEntry(nil), b.order[b.head:]...)
		b.head = 0
	}
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

// snapshot is the persisted form; Version tells the layouts apart. Version 1 has
// accounts and sessions; version 2 adds the idempotency keys (oldest first) and the
// bank's clock.
type snapshot struct {
	Version  int                `json:"version"`
	Accounts map[string]int64   `json:"accounts"`
	Sessions map[string]session `json:"sessions"`
	Keys     []keyEntry         `json:"keys,omitempty"`
	Now      int64              `json:"now,omitempty"`
}

// Snapshot captures the state (a copy, so Apply can go on while it is persisted).
func (b *Bank) Snapshot() (raft.FSMSnapshot, error) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	keys := make([]keyEntry, 0, len(b.keys))
	for _, e := range b.order[b.head:] {
		keys = append(keys, *e)
	}
	// Result slices are never mutated after Apply, so the sessions' copy may share them.
	return &snapshot{Version: 2, Accounts: maps.Clone(b.accounts), Sessions: maps.Clone(b.sessions), Keys: keys, Now: b.now}, nil
}

// Persist writes the snapshot as JSON.
func (s *snapshot) Persist(sink raft.SnapshotSink) error {
	if err := json.NewEncoder(sink).Encode(s); err != nil {
		sink.Cancel()
		return fmt.Errorf("bank snapshot: %w", err)
	}
	return sink.Close()
}

// Release is a no-op: the snapshot holds only its own copy.
func (s *snapshot) Release() {}

// Restore replaces all state with a snapshot's.
func (b *Bank) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	var s snapshot
	if err := json.NewDecoder(rc).Decode(&s); err != nil {
		return fmt.Errorf("bank restore: %w", err)
	}
	if s.Version != 1 && s.Version != 2 {
		return fmt.Errorf("bank restore: unknown snapshot version %d", s.Version)
	}
	if s.Accounts == nil {
		s.Accounts = map[string]int64{}
	}
	if s.Sessions == nil {
		s.Sessions = map[string]session{}
	}
	keys := make(map[string]*keyEntry, len(s.Keys))
	order := make([]*keyEntry, len(s.Keys))
	for i := range s.Keys {
		order[i] = &s.Keys[i]
		keys[s.Keys[i].Op.Key] = order[i]
	}
	b.mu.Lock()
	b.accounts, b.sessions = s.Accounts, s.Sessions
	b.keys, b.order, b.head, b.now = keys, order, 0, s.Now
	b.mu.Unlock()
	return nil
}
