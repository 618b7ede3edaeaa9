package atm_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/quorumq/quorumq/atm"
	"github.com/quorumq/quorumq/atm/atmapi"
)

const (
	linAccounts = 4
	linStart    = 1000 // cents per account at the start
)

type bankState [linAccounts]int64

// txIn is a transfer, or a read of every balance.
type txIn struct {
	read     bool
	from, to int
	amount   int64
}

// txOut is what the client saw. unknown: no answer (crash, timeout), so the transfer may
// or may not have happened.
type txOut struct {
	unknown      bool
	ok           bool
	balances     bankState
	fromB, toB   int64
	refusedFunds bool
}

// bankModel is the sequential bank: a transfer succeeds iff the source has the money.
var bankModel = porcupine.Model{
	Init: func() interface{} {
		var s bankState
		for i := range s {
			s[i] = linStart
		}
		return s
	},
	Step: func(state, input, output interface{}) (bool, interface{}) {
		s, in, out := state.(bankState), input.(txIn), output.(txOut)
		if in.read {
			return out.balances == s, s
		}
		can := s[in.from] >= in.amount
		next := s
		if can {
			next[in.from] -= in.amount
			next[in.to] += in.amount
		}
		switch {
		case out.unknown:
			return true, next
		case out.ok:
			return can && out.fromB == next[in.from] && out.toB == next[in.to], next
		default:
			return !can && out.refusedFunds, s
		}
	},
	DescribeOperation: func(input, output interface{}) string {
		in, out := input.(txIn), output.(txOut)
		if in.read {
			return fmt.Sprintf("read -> %v", out.balances)
		}
		return fmt.Sprintf("transfer a%d->a%d %d -> %+v", in.from, in.to, in.amount, out)
	},
}

func acct(i int) string { return fmt.Sprintf("a%d", i) }

// TestConcurrentTransfersLinearizable: many clients transfer between a few accounts
// through the HTTP APIs of all three ATMs while the leader is SIGKILLed and restarted.
// The history must be linearizable against the sequential bank, every read must show
// the same total with no negative balance, and all ATMs must end with equal books.
func TestConcurrentTransfersLinearizable(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	atms := startATMs(t, 3, "--terminal=false")
	ctx := context.Background()
	for i := range linAccounts {
		if _, err := atms[0].client().Deposit(ctx, acct(i), "10.00"); err != nil {
			t.Fatal(err)
		}
	}

	const clients, maxOps = 9, 2000
	start := time.Now()
	now := func() int64 { return time.Since(start).Nanoseconds() }
	var (
		mu      sync.Mutex
		history []porcupine.Operation
		nextID  atomic.Int64
		stop    atomic.Bool
		wg      sync.WaitGroup
	)
	nextID.Store(clients)
	record := func(op porcupine.Operation) bool {
		mu.Lock()
		defer mu.Unlock()
		history = append(history, op)
		return len(history) < maxOps
	}
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(c), 42))
			id, node := c, c%len(atms)
			for !stop.Load() {
				time.Sleep(time.Duration(20+rng.IntN(20)) * time.Millisecond)
				cl := atms[node].client()
				octx, cancel := context.WithTimeout(ctx, 8*time.Second)
				in := txIn{read: rng.IntN(5) == 0, from: rng.IntN(linAccounts), amount: 1 + rng.Int64N(600)}
				in.to = (in.from + 1 + rng.IntN(linAccounts-1)) % linAccounts
				call := now()
				var out txOut
				var err error
				if in.read {
					var r atmapi.AccountsResponse
					if r, err = cl.Accounts(octx); err == nil {
						if len(r.Accounts) != linAccounts {
							t.Errorf("read %d accounts: %+v", len(r.Accounts), r)
						}
						for i, a := range r.Accounts {
							out.balances[i] = a.Cents
						}
					}
				} else {
					var r atmapi.TransferResponse
					r, err = cl.Transfer(octx, acct(in.from), acct(in.to), fmt.Sprintf("%d.%02d", in.amount/100, in.amount%100))
					out.ok, out.fromB, out.toB = err == nil, r.FromCents, r.ToCents
				}
				ret := now()
				cancel()
				var apiErr *atm.APIError
				switch {
				case err == nil:
				case errors.As(err, &apiErr) && apiErr.Reason == "insufficient_funds":
					out.refusedFunds = true
				case errors.As(err, &apiErr) && apiErr.Refused():
					t.Errorf("unexpected refusal: %v", err)
					return
				case in.read:
					// A failed read has no effect; leave it out and try another ATM.
					node = (node + 1) % len(atms)
					continue
				default:
					// No answer: the transfer may still happen. It stays open until the
					// end of the history, and this client continues under a new id (a
					// client's operations must not overlap).
					out = txOut{unknown: true}
					ret = math.MaxInt64
					node = (node + 1) % len(atms)
				}
				if !record(porcupine.Operation{ClientId: id, Input: in, Call: call, Output: out, Return: ret}) {
					stop.Store(true)
				}
				if out.unknown {
					id = int(nextID.Add(1) - 1)
				}
			}
		}()
	}

	time.Sleep(1500 * time.Millisecond)
	leader := leaderOf(t, atms)
	t.Logf("SIGKILL leader %s", leader.id)
	leader.p.Kill()
	waitNewLeader(t, atms, leader)
	time.Sleep(1500 * time.Millisecond)
	leader.start(t)
	leader.waitReady(t)
	t.Logf("%s restarted", leader.id)
	time.Sleep(1500 * time.Millisecond)
	stop.Store(true)
	wg.Wait()

	var unknown, refused, reads int
	for _, op := range history {
		out := op.Output.(txOut)
		switch {
		case out.unknown:
			unknown++
		case out.refusedFunds:
			refused++
		case op.Input.(txIn).read:
			reads++
			checkBooks(t, "read", out.balances)
		}
	}
	t.Logf("history: %d ops (%d reads, %d refused for funds, %d unknown outcome)", len(history), reads, refused, unknown)

	res, info := porcupine.CheckOperationsVerbose(bankModel, history, 2*time.Minute)
	if res != porcupine.Ok {
		path := filepath.Join(os.TempDir(), fmt.Sprintf("atm-porcupine-%d.html", os.Getpid()))
		if err := porcupine.VisualizePath(bankModel, info, path); err == nil {
			t.Logf("visualization: %s", path)
		}
		t.Fatalf("history is not linearizable (result %v)", res)
	}

	// All three ATMs end with the same books, total unchanged.
	var first bankState
	for i, a := range atms {
		r, err := a.client().Accounts(ctx)
		if err != nil {
			t.Fatalf("%s accounts: %v", a.id, err)
		}
		var books bankState
		for j, acc := range r.Accounts {
			books[j] = acc.Cents
		}
		checkBooks(t, a.id, books)
		if i == 0 {
			first = books
		} else if books != first {
			t.Errorf("%s books %v differ from %s's %v", a.id, books, atms[0].id, first)
		}
	}
}

func checkBooks(t *testing.T, who string, b bankState) {
	t.Helper()
	var total int64
	for _, c := range b {
		if c < 0 {
			t.Errorf("%s: negative balance in %v", who, b)
		}
		total += c
	}
	if total != linAccounts*linStart {
		t.Errorf("%s: total %d in %v, want %d", who, total, b, linAccounts*linStart)
	}
}

// TestBankModelRejectsAnomalies checks the checker: lost updates, overdrafts and stale
// reads must not pass as linearizable.
func TestBankModelRejectsAnomalies(t *testing.T) {
	op := func(client int, call, ret int64, in txIn, out txOut) porcupine.Operation {
		return porcupine.Operation{ClientId: client, Input: in, Call: call, Output: out, Return: ret}
	}
	initial := bankState{linStart, linStart, linStart, linStart}
	after := initial
	after[0], after[1] = linStart-600, linStart+600
	tests := []struct {
		name    string
		history []porcupine.Operation
		want    porcupine.CheckResult
	}{
		{"transfer then read", []porcupine.Operation{
			op(0, 0, 10, txIn{from: 0, to: 1, amount: 600}, txOut{ok: true, fromB: linStart - 600, toB: linStart + 600}),
			op(1, 20, 30, txIn{read: true}, txOut{balances: after}),
		}, porcupine.Ok},
		{"stale read after completed transfer", []porcupine.Operation{
			op(0, 0, 10, txIn{from: 0, to: 1, amount: 600}, txOut{ok: true, fromB: linStart - 600, toB: linStart + 600}),
			op(1, 20, 30, txIn{read: true}, txOut{balances: initial}),
		}, porcupine.Illegal},
		{"overdraft: two sequential transfers both succeed", []porcupine.Operation{
			op(0, 0, 10, txIn{from: 0, to: 1, amount: 600}, txOut{ok: true, fromB: linStart - 600, toB: linStart + 600}),
			op(1, 20, 30, txIn{from: 0, to: 2, amount: 600}, txOut{ok: true, fromB: linStart - 1200, toB: linStart + 600}),
		}, porcupine.Illegal},
		{"lost update: both see the same starting balance", []porcupine.Operation{
			op(0, 0, 10, txIn{from: 0, to: 1, amount: 100}, txOut{ok: true, fromB: linStart - 100, toB: linStart + 100}),
			op(1, 0, 10, txIn{from: 0, to: 2, amount: 100}, txOut{ok: true, fromB: linStart - 100, toB: linStart + 100}),
		}, porcupine.Illegal},
		{"unknown outcome may apply or not", []porcupine.Operation{
			op(0, 0, math.MaxInt64, txIn{from: 0, to: 1, amount: 600}, txOut{unknown: true}),
			op(1, 20, 30, txIn{read: true}, txOut{balances: initial}),
			op(1, 40, 50, txIn{read: true}, txOut{balances: after}),
		}, porcupine.Ok},
	}
	for _, tt := range tests {
		if got := porcupine.CheckOperationsTimeout(bankModel, tt.history, 10*time.Second); got != tt.want {
			t.Errorf("%s: %v, want %v", tt.name, got, tt.want)
		}
	}
}
