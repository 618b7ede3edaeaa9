package nemesis

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/quorumq/quorumq/atm"
	"github.com/quorumq/quorumq/atm/atmapi"
	"github.com/quorumq/quorumq/cmd/quorumq/proctest"
	"github.com/quorumq/quorumq/internal/transport"
)

// bankAccounts are the accounts the bank's clients use; each starts with startCents.
const (
	bankAccounts = 4
	startCents   = 1000
)

// Bank is the ATM network under test: three `quorumq atm` processes with static peers.
type Bank struct {
	t     testing.TB
	atms  []*atmProc
	start time.Time
}

type atmProc struct {
	id, raft, http string
	args           []string
	env            []string
	mu             sync.Mutex
	p              *proctest.Proc
	hc             *http.Client // TLS and the admin token of the secured ATMs
}

func (a *atmProc) run(t testing.TB) {
	p := proctest.StartOpts(t, proctest.Opts{Name: a.id, Args: a.args, Env: a.env})
	a.mu.Lock()
	a.p = p
	a.mu.Unlock()
}

func (a *atmProc) proc() *proctest.Proc {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.p
}

func (a *atmProc) client() *atm.Client { return atm.NewClient(proctest.URL(a.http, ""), a.hc) }

// StartBank starts three ATMs, funds the accounts, and returns the ATMs' domain.
func StartBank(t testing.TB, dir string) (*Bank, *Domain) {
	t.Helper()
	b := &Bank{t: t}
	var peers []string
	for i := 1; i <= 3; i++ {
		a := &atmProc{id: fmt.Sprintf("atm%d", i), raft: proctest.FreeAddr(t), http: proctest.FreeAddr(t), hc: proctest.HTTPClient(t)}
		a.env = []string{transport.FaultFileEnv + "=" + filepath.Join(dir, a.id+".faults")}
		b.atms = append(b.atms, a)
		peers = append(peers, a.id+"="+a.raft)
	}
	d := &Domain{Name: "atms", Leader: b.leader}
	for _, a := range b.atms {
		a.args = []string{"atm", "--id", a.id, "--data-dir", filepath.Join(dir, a.id), "--raft", a.raft,
			"--http", a.http, "--peers", strings.Join(peers, ","), "--terminal=false"}
		a.run(t)
		d.Procs = append(d.Procs, &Proc{Name: a.id, Raft: a.raft, FaultFile: filepath.Join(dir, a.id+".faults"),
			Pid: func() int { return a.proc().Pid() }, Kill: func() { a.proc().Kill() }, Restart: func() { a.run(t) }})
	}
	for _, a := range b.atms {
		a.proc().WaitOutput(t, "ready id="+a.id, time.Minute)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for i := range bankAccounts {
		for {
			_, err := b.atms[0].client().Deposit(ctx, acct(i), cents(startCents))
			if err == nil {
				break
			}
			if ctx.Err() != nil {
				t.Fatalf("fund %s: %v", acct(i), err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	b.start = time.Now()
	return b, d
}

func acct(i int) string { return fmt.Sprintf("a%d", i) }

func cents(c int64) string { return fmt.Sprintf("%d.%02d", c/100, c%100) }

// leader is the ATM that says it leads.
func (b *Bank) leader(ctx context.Context) string {
	for _, a := range b.atms {
		st, err := a.client().Status(ctx)
		if err == nil && st.State == "leader" {
			return st.ID
		}
	}
	return ""
}

// Round runs clients against the ATMs until ctx ends and returns what they saw.
// round makes the clients' Idempotency-Keys unique across rounds.
func (b *Bank) Round(ctx context.Context, seed uint64, round, clients int) []BankOp {
	var (
		mu  sync.Mutex
		ops []BankOp
		wg  sync.WaitGroup
	)
	for c := range clients {
		wg.Go(func() {
			cl := &bankClient{b: b, rng: rand.New(rand.NewPCG(seed, uint64(round)<<32|uint64(c))), id: c, node: c % len(b.atms),
				keyPrefix: fmt.Sprintf("nemesis-%d-%d-%d-", seed, round, c)}
			for ctx.Err() == nil {
				if op, ok := cl.do(); ok {
					mu.Lock()
					ops = append(ops, op)
					mu.Unlock()
				}
				time.Sleep(time.Duration(10+cl.rng.IntN(30)) * time.Millisecond)
			}
		})
	}
	wg.Wait()
	return ops
}

func (b *Bank) now() int64 { return time.Since(b.start).Nanoseconds() }

// bankClient is one client: its requests never overlap, and it moves to another ATM
// when one does not answer.
type bankClient struct {
	b         *Bank
	rng       *rand.Rand
	id, node  int
	keyPrefix string
	n         int // writes sent, for their keys
}

// retryFor bounds how long a client retries a write whose outcome is unknown.
const retryFor = 10 * time.Second

// do sends one random request; false when it was a read that failed (no effect, so
// not part of the history). A write carries an Idempotency-Key and, while its outcome
// is unknown, is retried under the same key on the next ATM: it must take effect
// once, answered as the first time.
func (c *bankClient) do() (BankOp, bool) {
	op := BankOp{Client: c.id, Acct: c.rng.IntN(bankAccounts), Amount: 1 + c.rng.Int64N(500)}
	switch k := c.rng.IntN(20); {
	case k < 4:
		op.Kind = "deposit"
	case k < 8:
		op.Kind = "withdraw"
	case k < 15:
		op.Kind = "transfer"
		op.To = (op.Acct + 1 + c.rng.IntN(bankAccounts-1)) % bankAccounts
	case k < 17:
		op.Kind, op.Amount = "balance", 0
	default:
		op.Kind, op.Amount, op.Acct = "accounts", 0, 0
	}
	read := op.Kind == "balance" || op.Kind == "accounts"
	c.n++
	key := fmt.Sprintf("%s%d", c.keyPrefix, c.n)
	op.Call = c.b.now()
	for giveUp := time.Now().Add(retryFor); ; {
		op.Attempts++
		err := c.send(&op, c.b.atms[c.node].client().WithKey(key))
		op.Return = c.b.now()
		var apiErr *atm.APIError
		switch {
		case err == nil:
			op.Outcome = OutcomeOK
			return op, true
		case errors.As(err, &apiErr) && apiErr.Reason == "insufficient_funds":
			op.Outcome = OutcomeRefused
			return op, true
		case errors.As(err, &apiErr) && (apiErr.Refused() || apiErr.Outcome == atm.OutcomeNotApplied) && op.Attempts == 1:
			// Certain only for a first attempt: after an unknown one, a retry turned
			// away (no leader took it) says nothing of the first, which may land.
			if read {
				return op, false
			}
			op.Outcome = OutcomeNotApplied
			return op, true
		}
		op.Err = err.Error()
		c.node = (c.node + 1) % len(c.b.atms) // try another ATM
		if read {
			return op, false
		}
		if time.Now().After(giveUp) {
			// Only the bank's answer for the key (ok, or refused for funds) is final.
			op.Outcome, op.Return = OutcomeUnknown, 0
			return op, true
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// send makes op's request once and fills in its answer.
func (c *bankClient) send(op *BankOp, cl *atm.Client) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var err error
	switch op.Kind {
	case "deposit", "withdraw":
		f := cl.Deposit
		if op.Kind == "withdraw" {
			f = cl.Withdraw
		}
		var r atmapi.BalanceResponse
		r, err = f(ctx, acct(op.Acct), cents(op.Amount))
		op.Balance = r.Cents
	case "transfer":
		var r atmapi.TransferResponse
		r, err = cl.Transfer(ctx, acct(op.Acct), acct(op.To), cents(op.Amount))
		op.Balance, op.ToBal = r.FromCents, r.ToCents
	case "balance":
		var r atmapi.BalanceResponse
		r, err = cl.Balance(ctx, acct(op.Acct))
		op.Balance = r.Cents
	case "accounts":
		var r atmapi.AccountsResponse
		r, err = cl.Accounts(ctx)
		op.Balances = balances(r)
	}
	return err
}

func balances(r atmapi.AccountsResponse) []int64 {
	out := make([]int64, bankAccounts)
	for _, a := range r.Accounts {
		var i int
		if _, err := fmt.Sscanf(a.Name, "a%d", &i); err == nil && i < bankAccounts {
			out[i] = a.Cents
		}
	}
	return out
}

// Books waits until every ATM runs and has applied as much as the others, then
// returns each ATM's balances. Call it with no fault in place.
func (b *Bank) Books(ctx context.Context) ([][]int64, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	for {
		var applied []uint64
		var books [][]int64
		for _, a := range b.atms {
			// Applied before and after the accounts: a write that commits in between
			// (one whose client gave up, retried inside the ATM) would otherwise show in
			// one ATM's books and not in those read before it, at the same index.
			actx, acancel := context.WithTimeout(ctx, 2*time.Second)
			st, err := a.client().Status(actx)
			var r atmapi.AccountsResponse
			if err == nil {
				r, err = a.client().Accounts(actx)
			}
			after := st
			if err == nil {
				after, err = a.client().Status(actx)
			}
			acancel()
			if err != nil || after.Applied != st.Applied {
				break
			}
			applied = append(applied, st.Applied)
			books = append(books, balances(r))
		}
		if len(books) == len(b.atms) && slices.Min(applied) == slices.Max(applied) {
			return books, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("ATMs did not agree on an applied index (%v): %w", applied, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}
