package bank

import (
	"bytes"
	"io"
	"math"
	"testing"

	"github.com/hashicorp/raft"
)

// applyOne runs op as its own batch with a fresh sequence number.
func applyOne(t *testing.T, b *Bank, seq uint64, op Op) Result {
	t.Helper()
	br := apply(t, b, Batch{Session: "test/0", Seq: seq, Ops: []Op{op}})
	if br.Code != OK || len(br.Results) != 1 {
		t.Fatalf("batch refused: %+v", br)
	}
	return br.Results[0]
}

func apply(t *testing.T, b *Bank, batch Batch) BatchResult {
	t.Helper()
	return applyRaw(t, b, batch.Encode())
}

func applyRaw(t *testing.T, b *Bank, data []byte) BatchResult {
	t.Helper()
	out, ok := b.Apply(&raft.Log{Data: data}).([]byte)
	if !ok {
		t.Fatalf("Apply did not return []byte")
	}
	br, err := DecodeBatchResult(out)
	if err != nil {
		t.Fatal(err)
	}
	return br
}

func balances(b *Bank) map[string]int64 {
	out := map[string]int64{}
	for _, a := range b.Accounts() {
		out[a.Name] = a.Cents
	}
	return out
}

func TestApplyOps(t *testing.T) {
	long := string(bytes.Repeat([]byte("x"), MaxNameLen+1))
	tests := []struct {
		name string
		op   Op
		want Result
		// after is the expected state; the start state is alice=1000, bob=500, rich=MaxInt64-10.
		after map[string]int64
	}{
		{"deposit existing", Op{Kind: KindDeposit, Account: "alice", Amount: 250}, Result{Balance: 1250}, map[string]int64{"alice": 1250}},
		{"deposit opens account", Op{Kind: KindDeposit, Account: "carol", Amount: 1}, Result{Balance: 1}, map[string]int64{"carol": 1}},
		{"deposit zero", Op{Kind: KindDeposit, Account: "alice", Amount: 0}, Result{Code: CodeInvalidAmount}, nil},
		{"deposit negative", Op{Kind: KindDeposit, Account: "alice", Amount: -5}, Result{Code: CodeInvalidAmount}, nil},
		{"deposit overflow", Op{Kind: KindDeposit, Account: "rich", Amount: 11}, Result{Code: CodeOverflow, Balance: math.MaxInt64 - 10}, nil},
		{"deposit to max", Op{Kind: KindDeposit, Account: "rich", Amount: 10}, Result{Balance: math.MaxInt64}, map[string]int64{"rich": math.MaxInt64}},
		{"deposit empty name", Op{Kind: KindDeposit, Account: "", Amount: 5}, Result{Code: CodeInvalidName}, nil},
		{"deposit name with space", Op{Kind: KindDeposit, Account: "a b", Amount: 5}, Result{Code: CodeInvalidName}, nil},
		{"deposit name too long", Op{Kind: KindDeposit, Account: long, Amount: 5}, Result{Code: CodeInvalidName}, nil},
		{"deposit control char", Op{Kind: KindDeposit, Account: "a\x00", Amount: 5}, Result{Code: CodeInvalidName}, nil},
		{"withdraw", Op{Kind: KindWithdraw, Account: "alice", Amount: 1000}, Result{Balance: 0}, map[string]int64{"alice": 0}},
		{"withdraw insufficient", Op{Kind: KindWithdraw, Account: "alice", Amount: 1001}, Result{Code: CodeInsufficientFunds, Balance: 1000}, nil},
		{"withdraw unknown", Op{Kind: KindWithdraw, Account: "dave", Amount: 1}, Result{Code: CodeUnknownAccount}, nil},
		{"withdraw zero", Op{Kind: KindWithdraw, Account: "alice", Amount: 0}, Result{Code: CodeInvalidAmount}, nil},
		{"withdraw negative", Op{Kind: KindWithdraw, Account: "alice", Amount: -1}, Result{Code: CodeInvalidAmount}, nil},
		{"transfer", Op{Kind: KindTransfer, Account: "alice", To: "bob", Amount: 300}, Result{Balance: 700, ToBalance: 800}, map[string]int64{"alice": 700, "bob": 800}},
		{"transfer all", Op{Kind: KindTransfer, Account: "bob", To: "alice", Amount: 500}, Result{Balance: 0, ToBalance: 1500}, map[string]int64{"alice": 1500, "bob": 0}},
		{"transfer insufficient", Op{Kind: KindTransfer, Account: "bob", To: "alice", Amount: 501}, Result{Code: CodeInsufficientFunds, Balance: 500, ToBalance: 1000}, nil},
		{"transfer unknown from", Op{Kind: KindTransfer, Account: "dave", To: "alice", Amount: 1}, Result{Code: CodeUnknownAccount}, nil},
		{"transfer unknown to", Op{Kind: KindTransfer, Account: "alice", To: "dave", Amount: 1}, Result{Code: CodeUnknownAccount}, nil},
		{"transfer same account", Op{Kind: KindTransfer, Account: "alice", To: "alice", Amount: 1}, Result{Code: CodeSameAccount}, nil},
		{"transfer zero", Op{Kind: KindTransfer, Account: "alice", To: "bob", Amount: 0}, Result{Code: CodeInvalidAmount}, nil},
		{"transfer negative", Op{Kind: KindTransfer, Account: "alice", To: "bob", Amount: -100}, Result{Code: CodeInvalidAmount}, nil},
		{"transfer bad to name", Op{Kind: KindTransfer, Account: "alice", Amount: 1}, Result{Code: CodeInvalidName}, nil},
		{"transfer overflow", Op{Kind: KindTransfer, Account: "alice", To: "rich", Amount: 11}, Result{Code: CodeOverflow, Balance: 1000, ToBalance: math.MaxInt64 - 10}, nil},
		{"transfer opens receiver", Op{Kind: KindTransferOpen, Account: "alice", To: "dave", Amount: 250}, Result{Balance: 750, ToBalance: 250}, map[string]int64{"alice": 750, "dave": 250}},
		{"transfer to existing", Op{Kind: KindTransferOpen, Account: "alice", To: "bob", Amount: 300}, Result{Balance: 700, ToBalance: 800}, map[string]int64{"alice": 700, "bob": 800}},
		{"transfer opening, unknown from", Op{Kind: KindTransferOpen, Account: "dave", To: "alice", Amount: 1}, Result{Code: CodeUnknownAccount}, nil},
		{"transfer opening, insufficient", Op{Kind: KindTransferOpen, Account: "bob", To: "dave", Amount: 501}, Result{Code: CodeInsufficientFunds, Balance: 500}, nil},
		{"transfer opening, overflow", Op{Kind: KindTransferOpen, Account: "alice", To: "rich", Amount: 11}, Result{Code: CodeOverflow, Balance: 1000, ToBalance: math.MaxInt64 - 10}, nil},
		{"unknown kind", Op{Kind: Kind(9), Account: "alice", Amount: 1}, Result{Code: CodeMalformed}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := New()
			applyOne(t, b, 1, Op{Kind: KindDeposit, Account: "alice", Amount: 1000})
			applyOne(t, b, 2, Op{Kind: KindDeposit, Account: "bob", Amount: 500})
			applyOne(t, b, 3, Op{Kind: KindDeposit, Account: "rich", Amount: math.MaxInt64 - 10})
			want := balances(b)
			for k, v := range tt.after {
				want[k] = v
			}
			if got := applyOne(t, b, 4, tt.op); got != tt.want {
				t.Errorf("result = %+v, want %+v", got, tt.want)
			}
			if got := balances(b); !mapsEqual(got, want) {
				t.Errorf("state = %v, want %v", got, want)
			}
		})
	}
}

func mapsEqual(a, b map[string]int64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// TestExactlyOnce walks one session through retries, stale and out-of-order entries.
func TestExactlyOnce(t *testing.T) {
	dep := func(n int64) []Op { return []Op{{Kind: KindDeposit, Account: "alice", Amount: n}} }
	steps := []struct {
		name    string
		session string
		seq     uint64
		ops     []Op
		want    BatchResult
		balance int64
	}{
		{"first", "atm1/0", 10, dep(100), BatchResult{Results: []Result{{Balance: 100}}}, 100},
		{"retry returns stored result", "atm1/0", 10, dep(100), BatchResult{Results: []Result{{Balance: 100}}}, 100},
		{"retry with other payload still deduplicated", "atm1/0", 10, dep(999), BatchResult{Results: []Result{{Balance: 100}}}, 100},
		{"other lane same seq applies", "atm1/1", 10, dep(5), BatchResult{Results: []Result{{Balance: 105}}}, 105},
		{"next seq applies", "atm1/0", 11, dep(100), BatchResult{Results: []Result{{Balance: 205}}}, 205},
		{"gap in seq applies", "atm1/0", 20, dep(1), BatchResult{Results: []Result{{Balance: 206}}}, 206},
		{"older seq refused", "atm1/0", 11, dep(100), BatchResult{Code: CodeStale}, 206},
		{"retry of latest still answered", "atm1/0", 20, dep(1), BatchResult{Results: []Result{{Balance: 206}}}, 206},
		{"refusal is remembered too", "atm2/0", 1, []Op{{Kind: KindWithdraw, Account: "alice", Amount: 1000}}, BatchResult{Results: []Result{{Code: CodeInsufficientFunds, Balance: 206}}}, 206},
		{"retried refusal not re-decided", "atm2/0", 1, []Op{{Kind: KindWithdraw, Account: "alice", Amount: 1000}}, BatchResult{Results: []Result{{Code: CodeInsufficientFunds, Balance: 206}}}, 206},
		{"empty session refused", "", 1, dep(1), BatchResult{Code: CodeMalformed}, 206},
	}
	b := New()
	for _, s := range steps {
		got := apply(t, b, Batch{Session: s.session, Seq: s.seq, Ops: s.ops})
		if !resultsEqual(got, s.want) {
			t.Errorf("%s: got %+v, want %+v", s.name, got, s.want)
		}
		if bal, _ := b.Balance("alice"); bal != s.balance {
			t.Errorf("%s: balance %d, want %d", s.name, bal, s.balance)
		}
	}
}

func resultsEqual(a, b BatchResult) bool {
	if a.Code != b.Code || len(a.Results) != len(b.Results) {
		return false
	}
	for i := range a.Results {
		if a.Results[i] != b.Results[i] {
			return false
		}
	}
	return true
}

// TestBatchAppliesInOrder shows that ops in one entry see each other's effects.
func TestBatchAppliesInOrder(t *testing.T) {
	b := New()
	got := apply(t, b, Batch{Session: "s", Seq: 1, Ops: []Op{
		{Kind: KindDeposit, Account: "alice", Amount: 100},
		{Kind: KindDeposit, Account: "bob", Amount: 1},
		{Kind: KindTransfer, Account: "alice", To: "bob", Amount: 60},
		{Kind: KindTransfer, Account: "alice", To: "bob", Amount: 60}, // refused: only 40 left
		{Kind: KindWithdraw, Account: "bob", Amount: 61},
	}})
	want := BatchResult{Results: []Result{
		{Balance: 100}, {Balance: 1}, {Balance: 40, ToBalance: 61},
		{Code: CodeInsufficientFunds, Balance: 40, ToBalance: 61}, {Balance: 0},
	}}
	if !resultsEqual(got, want) {
		t.Fatalf("got %+v, want %+v", got, want)
	}
}

func TestMalformedEntries(t *testing.T) {
	good := Batch{Session: "s", Seq: 1, Ops: []Op{{Kind: KindDeposit, Account: "alice", Amount: 100}}}.Encode()
	tests := map[string][]byte{
		"empty":           {},
		"unknown version": append([]byte{9}, good[1:]...),
		"unknown type":    append([]byte{formatV1, 7}, good[2:]...),
		"truncated":       good[:len(good)-1],
		"trailing bytes":  append(append([]byte{}, good...), 0),
		"huge count":      {formatV1, entryBatch, 1, 's', 1, 0xff, 0xff, 0xff, 0x7f},
	}
	for name, data := range tests {
		b := New()
		if got := applyRaw(t, b, data); got.Code != CodeMalformed {
			t.Errorf("%s: code %d, want malformed", name, got.Code)
		}
		if len(b.Accounts()) != 0 {
			t.Errorf("%s: state changed", name)
		}
	}
}

func TestCodecRoundTrip(t *testing.T) {
	in := Batch{Session: "atm1/3", Seq: math.MaxUint64, Ops: []Op{
		{Kind: KindDeposit, Account: "alice", Amount: math.MaxInt64}, {Kind: KindTransfer, Account: "ä", To: "b", Amount: -1}, {Kind: KindWithdraw, Account: "x", Amount: 0},
	}}
	out, err := DecodeBatch(in.Encode())
	if err != nil {
		t.Fatal(err)
	}
	if out.Session != in.Session || out.Seq != in.Seq || len(out.Ops) != len(in.Ops) {
		t.Fatalf("got %+v", out)
	}
	for i := range in.Ops {
		if in.Ops[i] != out.Ops[i] {
			t.Errorf("op %d: got %+v want %+v", i, out.Ops[i], in.Ops[i])
		}
	}
	res := BatchResult{Results: []Result{{CodeOverflow, math.MinInt64, math.MaxInt64}}}
	back, err := DecodeBatchResult(res.Encode())
	if err != nil || !resultsEqual(back, res) {
		t.Fatalf("result round trip: %+v, %v", back, err)
	}
}

type memSink struct {
	bytes.Buffer
	cancelled bool
}

func (s *memSink) ID() string    { return "mem" }
func (s *memSink) Cancel() error { s.cancelled = true; return nil }
func (s *memSink) Close() error  { return nil }

func TestSnapshotRestore(t *testing.T) {
	b := New()
	apply(t, b, Batch{Session: "atm1/0", Seq: 7, Ops: []Op{{Kind: KindDeposit, Account: "alice", Amount: 100}, {Kind: KindDeposit, Account: "bob", Amount: 50}}})
	snap, err := b.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	// Writes after the snapshot was taken must not leak into it.
	apply(t, b, Batch{Session: "atm1/0", Seq: 8, Ops: []Op{{Kind: KindDeposit, Account: "carol", Amount: 1}}})
	var sink memSink
	if err := snap.Persist(&sink); err != nil {
		t.Fatal(err)
	}
	snap.Release()

	r := New()
	apply(t, r, Batch{Session: "other", Seq: 1, Ops: []Op{{Kind: KindDeposit, Account: "zed", Amount: 1}}})
	if err := r.Restore(io.NopCloser(&sink)); err != nil {
		t.Fatal(err)
	}
	if got, want := balances(r), map[string]int64{"alice": 100, "bob": 50}; !mapsEqual(got, want) {
		t.Fatalf("restored state %v, want %v", got, want)
	}
	// The dedup table came along: a retry of seq 7 is answered, not re-applied.
	got := apply(t, r, Batch{Session: "atm1/0", Seq: 7, Ops: []Op{{Kind: KindDeposit, Account: "alice", Amount: 100}, {Kind: KindDeposit, Account: "bob", Amount: 50}}})
	if want := (BatchResult{Results: []Result{{Balance: 100}, {Balance: 50}}}); !resultsEqual(got, want) {
		t.Fatalf("retry after restore: %+v", got)
	}
	if bal, _ := r.Balance("alice"); bal != 100 {
		t.Fatalf("retry re-applied: alice=%d", bal)
	}
	if err := r.Restore(io.NopCloser(bytes.NewBufferString(`{"version":3}`))); err == nil {
		t.Fatal("restore of unknown snapshot version succeeded")
	}
}
