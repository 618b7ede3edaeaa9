// Package atm is one ATM of the ATM network: a member of the "atm" Raft group holding the
// replicated bank (atm/bank), the operations every front end shares (this file), a small
// HTTP API and an interactive terminal.
package atm

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/quorumq/quorumq/atm/bank"
	"github.com/quorumq/quorumq/election"
)

// raftNode is the part of election.Node the ATM uses; tests substitute a local fake.
type raftNode interface {
	Apply(ctx context.Context, cmd []byte) ([]byte, error)
	ReadBarrier(ctx context.Context) error
	Leader() election.Peer
	IsLeader() bool
	Members(ctx context.Context) ([]election.Peer, error)
	AppliedIndex() uint64
	Recovering() (bool, string)
	Halted() (bool, string)
}

// ATM offers the bank operations to the terminal and the HTTP API. Writes go through the
// batcher (group commit, exactly-once); reads are linearizable unless stale is set.
type ATM struct {
	id      string
	node    raftNode
	bank    *bank.Bank
	batch   *batcher
	stale   bool
	timeout time.Duration
}

// Status describes this ATM's view of the group.
type Status struct {
	ID      string
	State   string // leader or follower
	Leader  string // leader's ID, "none" when unknown
	Applied uint64
	Members []string
	Stale   bool
	// Recovering says why the member sits out elections and serves no reads after a
	// storage fault; "" when it is healthy.
	Recovering string
}

func (a *ATM) opCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, a.timeout)
}

// The writes below take the caller's idempotency key ("" for none): the first write
// with a key is applied, and any later one with the same key (within
// bank.KeyRetention) gets the first one's answer. A failed write's error matches
// ErrOutcomeUnknown when the write may still be applied; otherwise it was not applied.
// With a key that covers every attempt under it, so only the bank's own refusals and
// invalid requests are "not applied".

// Deposit adds cents to name, opening the account if it is new, and returns the balance.
func (a *ATM) Deposit(ctx context.Context, key, name string, cents int64) (int64, error) {
	res, err := a.submit(ctx, bank.Op{Kind: bank.KindDeposit, Account: name, Amount: cents, Key: key})
	return res.Balance, err
}

// Withdraw takes cents from name and returns the balance left.
func (a *ATM) Withdraw(ctx context.Context, key, name string, cents int64) (int64, error) {
	res, err := a.submit(ctx, bank.Op{Kind: bank.KindWithdraw, Account: name, Amount: cents, Key: key})
	return res.Balance, err
}

// moneyOp is Deposit or Withdraw as a method expression, for the front ends (terminal,
// HTTP) that serve both the same way.
type moneyOp func(a *ATM, ctx context.Context, key, name string, cents int64) (int64, error)

// Transfer moves cents from one account to another, opening the receiving account if it
// is new, and returns both balances.
func (a *ATM) Transfer(ctx context.Context, key, from, to string, cents int64) (int64, int64, error) {
	res, err := a.submit(ctx, bank.Op{Kind: bank.KindTransferOpen, Account: from, To: to, Amount: cents, Key: key})
	return res.Balance, res.ToBalance, err
}

// submit refuses what is certainly invalid before spending a Raft round trip on it (the
// FSM checks again), then waits for the group's answer.
func (a *ATM) submit(ctx context.Context, op bank.Op) (bank.Result, error) {
	if err := checkOp(op); err != nil {
		return bank.Result{}, err
	}
	ctx, cancel := a.opCtx(ctx)
	defer cancel()
	res, err := a.batch.do(ctx, op)
	if err != nil && op.Key != "" && !errors.Is(err, ErrOutcomeUnknown) {
		// This attempt was not applied, but an earlier one under the same key may still
		// be: only the bank's own answer, which consults its key table, settles a key.
		err = outcomeUnknown(err)
	}
	if err != nil {
		return res, err
	}
	return res, a.explain(op, res)
}

func checkOp(op bank.Op) error {
	if err := bank.ValidName(op.Account); err != nil {
		return err
	}
	if op.Kind == bank.KindTransferOpen {
		if err := bank.ValidName(op.To); err != nil {
			return err
		}
		if op.To == op.Account {
			return fmt.Errorf("%w (%s)", bank.ErrSameAccount, op.Account)
		}
	}
	if op.Amount <= 0 {
		return bank.ErrInvalidAmount
	}
	if op.Key != "" {
		return bank.ValidKey(op.Key)
	}
	return nil
}

// explain turns a refusal code into an error that names the account involved.
func (a *ATM) explain(op bank.Op, res bank.Result) error {
	err := res.Code.Err()
	switch {
	case err == nil:
		return nil
	case errors.Is(err, bank.ErrInsufficientFunds):
		return fmt.Errorf("%w: %s has %s, needs %s", err, op.Account, bank.FormatAmount(res.Balance), bank.FormatAmount(op.Amount))
	case errors.Is(err, bank.ErrUnknownAccount):
		// Only the account money leaves can be unknown: deposits and transfers open the
		// account they credit.
		return fmt.Errorf("%w: %s", err, op.Account)
	case errors.Is(err, bank.ErrOverflow):
		// Only the account credited can overflow.
		if op.Kind == bank.KindTransferOpen {
			return fmt.Errorf("%w: %s", err, op.To)
		}
		return fmt.Errorf("%w: %s", err, op.Account)
	}
	return err
}

// read waits until the local bank reflects every write completed before the call
// (unless stale reads were asked for).
func (a *ATM) read(ctx context.Context) error {
	if a.stale {
		return nil
	}
	ctx, cancel := a.opCtx(ctx)
	defer cancel()
	if err := a.node.ReadBarrier(ctx); err != nil {
		if ctx.Err() != nil || errors.Is(err, election.ErrNoLeader) {
			return fmt.Errorf("%w (%v)", ErrUnavailable, err)
		}
		return err
	}
	return nil
}

// Balance returns the balance of name.
func (a *ATM) Balance(ctx context.Context, name string) (int64, error) {
	if err := bank.ValidName(name); err != nil {
		return 0, err
	}
	if err := a.read(ctx); err != nil {
		return 0, err
	}
	c, ok := a.bank.Balance(name)
	if !ok {
		return 0, fmt.Errorf("%w: %s", bank.ErrUnknownAccount, name)
	}
	return c, nil
}

// Accounts returns every account, sorted by name.
func (a *ATM) Accounts(ctx context.Context) ([]bank.Account, error) {
	if err := a.read(ctx); err != nil {
		return nil, err
	}
	return a.bank.Accounts(), nil
}

// Status reports this ATM's view of the group; it needs no quorum.
func (a *ATM) Status(ctx context.Context) Status {
	st := Status{ID: a.id, State: "follower", Leader: a.node.Leader().ID, Applied: a.node.AppliedIndex(), Stale: a.stale}
	if a.node.IsLeader() {
		st.State = "leader"
	}
	if st.Leader == "" {
		st.Leader = "none"
	}
	if rec, why := a.node.Recovering(); rec {
		st.Recovering = why
	}
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if members, err := a.node.Members(ctx); err == nil {
		for _, m := range members {
			st.Members = append(st.Members, m.ID)
		}
		slices.Sort(st.Members)
	}
	return st
}

// String renders the status as one line of key=value pairs.
func (s Status) String() string {
	line := fmt.Sprintf("id=%s state=%s leader=%s applied=%d members=%s", s.ID, s.State, s.Leader, s.Applied, strings.Join(s.Members, ","))
	if s.Stale {
		line += " reads=stale"
	}
	if s.Recovering != "" {
		line += fmt.Sprintf(" recovering=%q", s.Recovering)
	}
	return line
}
