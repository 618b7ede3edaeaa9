package nemesis

import (
	"path/filepath"
	"testing"
	"time"
)

// goodQueue is a clean history: two producers, two partitions, one consumer that got
// everything; the unknown send was not stored.
func goodQueue() *QueueHistory {
	return &QueueHistory{
		Sends: []Send{
			{Value: "p0-0", Producer: 0, Seq: 0, Acked: true, Partition: 0, Offset: 0},
			{Value: "p1-0", Producer: 1, Seq: 0, Acked: true, Partition: 1, Offset: 0},
			{Value: "p0-1", Producer: 0, Seq: 1, Acked: true, Partition: 0, Offset: 1},
			{Value: "p0-2", Producer: 0, Seq: 2, Err: "timeout"},
			{Value: "p1-1", Producer: 1, Seq: 1, Acked: true, Partition: 1, Offset: 1},
		},
		Log: map[int][]string{0: {"p0-0", "p0-1"}, 1: {"p1-0", "p1-1"}},
		Deliveries: []Delivery{
			{Partition: 0, Offset: 0, Value: "p0-0"},
			{Partition: 1, Offset: 0, Value: "p1-0"},
			{Partition: 0, Offset: 1, Value: "p0-1"},
			{Partition: 1, Offset: 1, Value: "p1-1"},
		},
	}
}

func TestQueueCheckerFindsViolations(t *testing.T) {
	tests := []struct {
		name   string
		change func(h *QueueHistory)
		want   func(r QueueResult) int // the count that must be non-zero; nil: clean
	}{
		{"clean", func(*QueueHistory) {}, nil},
		{"unknown send stored once is fine", func(h *QueueHistory) {
			h.Log[0] = append(h.Log[0], "p0-2")
			h.Deliveries = append(h.Deliveries, Delivery{Partition: 0, Offset: 2, Value: "p0-2"})
		}, nil},
		{"acknowledged record lost", func(h *QueueHistory) {
			h.Log[1] = h.Log[1][:1]
			h.Deliveries = h.Deliveries[:3]
		}, func(r QueueResult) int { return r.Lost }},
		{"consumer skipped a message", func(h *QueueHistory) {
			h.Deliveries = h.Deliveries[1:]
		}, func(r QueueResult) int { return r.Lost }},
		{"record stored twice", func(h *QueueHistory) {
			h.Log[1] = append(h.Log[1], "p0-1")
			h.Deliveries = append(h.Deliveries, Delivery{Partition: 1, Offset: 2, Value: "p0-1"})
		}, func(r QueueResult) int { return r.Duplicated }},
		{"message delivered twice", func(h *QueueHistory) {
			h.Deliveries = append(h.Deliveries, h.Deliveries[0])
		}, func(r QueueResult) int { return r.Duplicated }},
		{"producer's records stored out of order", func(h *QueueHistory) {
			h.Log[0] = []string{"p0-1", "p0-0"}
			h.Sends[0].Offset, h.Sends[2].Offset = 1, 0
			h.Deliveries[0].Value, h.Deliveries[2].Value = "p0-1", "p0-0"
		}, func(r QueueResult) int { return r.Reordered }},
		{"consumer got a partition out of order", func(h *QueueHistory) {
			h.Deliveries[0], h.Deliveries[2] = h.Deliveries[2], h.Deliveries[0]
		}, func(r QueueResult) int { return r.Reordered }},
		{"stored message nobody sent", func(h *QueueHistory) {
			h.Log[1] = append(h.Log[1], "ghost")
			h.Deliveries = append(h.Deliveries, Delivery{Partition: 1, Offset: 2, Value: "ghost"})
		}, func(r QueueResult) int { return r.Invented }},
		{"delivery the partition does not hold", func(h *QueueHistory) {
			h.Deliveries[3].Value = "p1-0"
		}, func(r QueueResult) int { return r.Invented }},
		{"acknowledged at the wrong offset", func(h *QueueHistory) {
			h.Sends[1].Offset = 1
		}, func(r QueueResult) int { return r.Invented }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := goodQueue()
			tt.change(h)
			r := CheckQueue(h)
			if tt.want == nil && !r.OK() {
				t.Fatalf("clean history reported: %+v", r)
			}
			if tt.want != nil && tt.want(r) == 0 {
				t.Fatalf("violation not reported: %+v", r)
			}
		})
	}
}

func op(kind string, acct, to int, amount int64, call, ret int64, outcome string, bal, toBal int64, balances ...int64) BankOp {
	return BankOp{Kind: kind, Acct: acct, To: to, Amount: amount, Call: call, Return: ret, Outcome: outcome, Balance: bal, ToBal: toBal, Balances: balances}
}

func TestBankCheckerFindsViolations(t *testing.T) {
	start := []int64{1000, 1000}
	tests := []struct {
		name  string
		round BankRound
		want  func(r BankResult) int // the count that must be non-zero; nil: clean
	}{
		{"clean", BankRound{Start: start, End: [][]int64{{900, 1200}, {900, 1200}}, Ops: []BankOp{
			op("deposit", 1, 0, 100, 0, 10, OutcomeOK, 1100, 0),
			op("transfer", 0, 1, 100, 20, 30, OutcomeOK, 900, 1200),
			op("withdraw", 0, 0, 5000, 40, 50, OutcomeRefused, 0, 0),
			op("accounts", 0, 0, 0, 60, 70, OutcomeOK, 0, 0, 900, 1200),
		}}, nil},
		{"unknown deposit, applied", BankRound{Start: start, End: [][]int64{{1100, 1000}}, Ops: []BankOp{
			op("deposit", 0, 0, 100, 0, 0, OutcomeUnknown, 0, 0),
			op("balance", 0, 0, 0, 20, 30, OutcomeOK, 1100, 0),
		}}, nil},
		{"unknown deposit, not applied", BankRound{Start: start, End: [][]int64{{1000, 1000}}, Ops: []BankOp{
			op("deposit", 0, 0, 100, 0, 0, OutcomeUnknown, 0, 0),
		}}, nil},
		{"stale read", BankRound{Start: start, End: [][]int64{{1100, 1000}}, Ops: []BankOp{
			op("deposit", 0, 0, 100, 0, 10, OutcomeOK, 1100, 0),
			op("balance", 0, 0, 0, 20, 30, OutcomeOK, 1000, 0),
		}}, func(r BankResult) int { return r.Nonlinearizable }},
		{"overdraft", BankRound{Start: start, End: [][]int64{{-200, 2200}}, Ops: []BankOp{
			op("transfer", 0, 1, 600, 0, 10, OutcomeOK, 400, 1600),
			op("transfer", 0, 1, 600, 20, 30, OutcomeOK, -200, 2200),
		}}, func(r BankResult) int { return r.Nonlinearizable * r.Negative }},
		{"deposit applied twice", BankRound{Start: start, End: [][]int64{{1200, 1000}}, Ops: []BankOp{
			op("deposit", 0, 0, 100, 0, 10, OutcomeOK, 1100, 0),
		}}, func(r BankResult) int { return r.Nonlinearizable * r.NotConserved }},
		{"refused withdrawal applied", BankRound{Start: start, End: [][]int64{{990, 1000}}, Ops: []BankOp{
			op("withdraw", 0, 0, 10, 0, 10, OutcomeRefused, 0, 0),
		}}, func(r BankResult) int { return r.Nonlinearizable * r.NotConserved }},
		{"money from nowhere", BankRound{Start: start, End: [][]int64{{1000, 1050}}, Ops: []BankOp{
			op("transfer", 0, 1, 50, 0, 10, OutcomeOK, 950, 1050),
		}}, func(r BankResult) int { return r.Nonlinearizable * r.NotConserved }},
		{"ATMs disagree", BankRound{Start: start, End: [][]int64{{1000, 1000}, {900, 1100}}},
			func(r BankResult) int { return r.NotConserved }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := CheckBank([]BankRound{tt.round}, 10*time.Second)
			if tt.want == nil && !r.OK() {
				t.Fatalf("clean history reported: %+v", r)
			}
			if tt.want != nil && tt.want(r) == 0 {
				t.Fatalf("violation not reported: %+v", r)
			}
		})
	}
}

func TestHistoryRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "h.json")
	h := &History{Seed: 7, Faults: []string{"kill b1"}, Queue: goodQueue(),
		Bank: []BankRound{{Start: []int64{1}, End: [][]int64{{1}}}}}
	if err := h.Save(path); err != nil {
		t.Fatal(err)
	}
	back, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if !CheckQueue(back.Queue).OK() || !CheckBank(back.Bank, time.Second).OK() || back.Seed != 7 {
		t.Fatalf("history changed through save and load: %+v", back)
	}
}

// TestReplayOfAFailingHistory: a saved history with a violation fails the verdict
// that --replay prints, and a clean one passes it.
func TestReplayOfAFailingHistory(t *testing.T) {
	path := filepath.Join(t.TempDir(), "h.json")
	bad := goodQueue()
	bad.Log[1] = bad.Log[1][:1] // an acknowledged record lost
	if err := (&History{Queue: bad}).Save(path); err != nil {
		t.Fatal(err)
	}
	h, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if verdict(t, h, nil, nil) {
		t.Fatal("a history with a lost record passed")
	}
	if !verdict(t, &History{Queue: goodQueue()}, nil, nil) {
		t.Fatal("a clean history failed")
	}
}
