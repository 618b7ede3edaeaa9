package nemesis

import (
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/anishathalye/porcupine"
)

// maxAccounts bounds the bank's accounts so a state is a comparable array.
const maxAccounts = 8

type bankState [maxAccounts]int64

// bankModel is the sequential bank: deposits always succeed, a withdrawal or a
// transfer iff the account holds the amount, reads see every balance as it is. An
// operation whose outcome is unknown may take effect at any point after its call, or
// never (which is the same as taking effect after everything else).
var bankModel = porcupine.Model{
	Step: func(state, input, output any) (bool, any) {
		s, op := state.(bankState), input.(BankOp)
		next := s
		can := true
		switch op.Kind {
		case "deposit":
			next[op.Acct] += op.Amount
		case "withdraw":
			can = s[op.Acct] >= op.Amount
			if can {
				next[op.Acct] -= op.Amount
			}
		case "transfer":
			can = s[op.Acct] >= op.Amount
			if can {
				next[op.Acct] -= op.Amount
				next[op.To] += op.Amount
			}
		case "balance":
			return op.Outcome == OutcomeUnknown || op.Balance == s[op.Acct], s
		case "accounts":
			return op.Outcome == OutcomeUnknown || slices.Equal(op.Balances, s[:len(op.Balances)]), s
		}
		switch op.Outcome {
		case OutcomeUnknown:
			return true, next
		case OutcomeNotApplied:
			return true, s
		case OutcomeRefused:
			return !can, s
		}
		ok := can && op.Balance == next[op.Acct]
		if op.Kind == "transfer" {
			ok = ok && op.ToBal == next[op.To]
		}
		return ok, next
	},
	DescribeOperation: func(input, _ any) string {
		op := input.(BankOp)
		switch op.Kind {
		case "accounts":
			return fmt.Sprintf("accounts -> %s %v", op.Outcome, op.Balances)
		case "transfer":
			return fmt.Sprintf("transfer a%d->a%d %d -> %s %d/%d", op.Acct, op.To, op.Amount, op.Outcome, op.Balance, op.ToBal)
		}
		return fmt.Sprintf("%s a%d %d -> %s %d", op.Kind, op.Acct, op.Amount, op.Outcome, op.Balance)
	},
}

// BankResult counts what the bank's history shows.
type BankResult struct {
	Nonlinearizable int // rounds whose history no sequential bank explains
	Undecided       int // rounds the linearizability check could not decide in time
	NotConserved    int // rounds ending with money the answered requests do not explain, or ATMs disagreeing
	Negative        int // balances below zero, as read or at a round's end

	Rounds, Ops, Unknown, Refused, Retried int
	Problems                               []string
}

// OK reports whether no violation was found and every round was decided.
func (r BankResult) OK() bool {
	return r.Nonlinearizable+r.Undecided+r.NotConserved+r.Negative == 0
}

func (r *BankResult) problem(counter *int, format string, args ...any) {
	*counter++
	if len(r.Problems) < maxProblems {
		r.Problems = append(r.Problems, fmt.Sprintf(format, args...))
	}
}

// CheckBank checks each round of a bank history; timeout bounds the search of one
// round's linearizability check.
func CheckBank(rounds []BankRound, timeout time.Duration) BankResult {
	var r BankResult
	for i, round := range rounds {
		r.Rounds++
		checkRound(&r, i, round, timeout)
	}
	return r
}

func checkRound(r *BankResult, i int, round BankRound, timeout time.Duration) {
	n := len(round.Start)
	if n == 0 || n > maxAccounts || len(round.End) == 0 {
		r.problem(&r.NotConserved, "round %d: malformed (%d accounts, %d final reads)", i, n, len(round.End))
		return
	}
	var start bankState
	copy(start[:], round.Start)
	var total, low, high int64
	for _, c := range round.Start {
		total += c
	}
	low, high = total, total
	var last int64
	ops := make([]porcupine.Operation, 0, len(round.Ops)+1)
	for _, op := range round.Ops {
		r.Ops++
		if op.Attempts > 1 {
			r.Retried++
		}
		ret := op.Return
		switch op.Outcome {
		case OutcomeUnknown:
			r.Unknown++
			ret = math.MaxInt64
		case OutcomeRefused:
			r.Refused++
		}
		last = max(last, op.Call, op.Return)
		switch {
		case op.Kind == "deposit" && op.Outcome == OutcomeOK:
			low, high = low+op.Amount, high+op.Amount
		case op.Kind == "deposit" && op.Outcome == OutcomeUnknown:
			high += op.Amount
		case op.Kind == "withdraw" && op.Outcome == OutcomeOK:
			low, high = low-op.Amount, high-op.Amount
		case op.Kind == "withdraw" && op.Outcome == OutcomeUnknown:
			low -= op.Amount
		}
		for _, b := range append([]int64{op.Balance, op.ToBal}, op.Balances...) {
			if b < 0 && op.Outcome == OutcomeOK {
				r.problem(&r.Negative, "round %d: %s answered a negative balance: %+v", i, op.Kind, op)
				break
			}
		}
		ops = append(ops, porcupine.Operation{ClientId: op.Client, Input: op, Call: op.Call, Output: nil, Return: ret})
	}
	for a, books := range round.End {
		if !slices.Equal(books, round.End[0]) {
			r.problem(&r.NotConserved, "round %d: ATM %d ends with %v, ATM 0 with %v", i, a, books, round.End[0])
		}
		var sum int64
		for _, c := range books {
			sum += c
			if c < 0 {
				r.problem(&r.Negative, "round %d: ATM %d ends with a negative balance: %v", i, a, books)
			}
		}
		if sum < low || sum > high {
			r.problem(&r.NotConserved, "round %d: ATM %d ends with %d cents in all, the answers allow %d–%d", i, a, sum, low, high)
		}
	}
	// The final balances are a read after everything else.
	final := BankOp{Kind: "accounts", Outcome: OutcomeOK, Balances: round.End[0], Call: last + 1, Return: last + 2}
	ops = append(ops, porcupine.Operation{ClientId: -1, Input: final, Call: final.Call, Return: final.Return})

	model := bankModel
	model.Init = func() any { return start }
	switch res, _ := porcupine.CheckOperationsVerbose(model, ops, timeout); res {
	case porcupine.Illegal:
		r.problem(&r.Nonlinearizable, "round %d: %d operations are not linearizable", i, len(ops))
	case porcupine.Unknown:
		r.problem(&r.Undecided, "round %d: linearizability of %d operations undecided after %v", i, len(ops), timeout)
	}
}
