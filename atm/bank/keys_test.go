package bank

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"
)

func keyed(seq uint64, at time.Duration, ops ...Op) Batch {
	return Batch{Session: "atm1/0", Seq: seq, Time: int64(at), Ops: ops}
}

// TestIdempotencyKeys: the first op under a key is applied; a later one with the same
// key, in any batch or session, gets the first result; another op under it is refused.
func TestIdempotencyKeys(t *testing.T) {
	b := New()
	dep := Op{Kind: KindDeposit, Account: "alice", Amount: 100, Key: "k1"}
	wd := Op{Kind: KindWithdraw, Account: "alice", Amount: 500, Key: "k2"}
	steps := []struct {
		name    string
		batch   Batch
		want    []Result
		balance int64
	}{
		{"first deposit applies", keyed(1, 0, dep), []Result{{Balance: 100}}, 100},
		{"same key, same batch twice: once", keyed(2, time.Second, dep, dep), []Result{{Balance: 100}, {Balance: 100}}, 100},
		{"same key from another session: the first answer", Batch{Session: "atm2/3", Seq: 1, Time: int64(time.Second), Ops: []Op{dep}}, []Result{{Balance: 100}}, 100},
		{"refusal is kept too", keyed(3, 2*time.Second, wd), []Result{{Code: CodeInsufficientFunds, Balance: 100}}, 100},
		{"funds arrive, same key still refused", keyed(4, 3*time.Second, Op{Kind: KindDeposit, Account: "alice", Amount: 1000}, wd), []Result{{Balance: 1100}, {Code: CodeInsufficientFunds, Balance: 100}}, 1100},
		{"key reused for another op", keyed(5, 4*time.Second, Op{Kind: KindDeposit, Account: "alice", Amount: 7, Key: "k1"}), []Result{{Code: CodeKeyReused}}, 1100},
		{"a batch with and without keys", keyed(6, 5*time.Second, Op{Kind: KindDeposit, Account: "alice", Amount: 1}, dep), []Result{{Balance: 1101}, {Balance: 100}}, 1101},
	}
	for _, s := range steps {
		got := apply(t, b, s.batch)
		if !resultsEqual(got, BatchResult{Results: s.want}) {
			t.Fatalf("%s: %+v, want %+v", s.name, got.Results, s.want)
		}
		if bal, _ := b.Balance("alice"); bal != s.balance {
			t.Fatalf("%s: alice=%d, want %d", s.name, bal, s.balance)
		}
	}
}

// TestKeysExpire: keys are forgotten KeyRetention after they were used, by the times
// the batches carry (a batch from a slower clock moves nothing back), and beyond MaxKeys
// the oldest go first.
func TestKeysExpire(t *testing.T) {
	b := New()
	dep := func(key string) Op { return Op{Kind: KindDeposit, Account: "alice", Amount: 1, Key: key} }
	apply(t, b, keyed(1, time.Hour, dep("old")))
	apply(t, b, keyed(2, time.Hour+KeyRetention/2, dep("young")))
	apply(t, b, keyed(3, time.Minute, dep("old"))) // a slow clock: "old" is still known
	if bal, _ := b.Balance("alice"); bal != 2 {
		t.Fatalf("alice=%d after a retry, want 2", bal)
	}
	apply(t, b, keyed(4, time.Hour+KeyRetention+time.Second, dep("young"), dep("old")))
	if bal, _ := b.Balance("alice"); bal != 3 {
		t.Fatalf("alice=%d, want 3: only the expired key applies again", bal)
	}

	ops := make([]Op, MaxKeys+10)
	for i := range ops {
		ops[i] = Op{Kind: KindDeposit, Account: "bob", Amount: 1, Key: fmt.Sprintf("n%d", i)}
	}
	apply(t, b, keyed(5, time.Hour+KeyRetention+2*time.Second, ops...))
	if len(b.keys) != MaxKeys {
		t.Fatalf("%d keys kept, want MaxKeys=%d", len(b.keys), MaxKeys)
	}
	apply(t, b, keyed(6, time.Hour+KeyRetention+3*time.Second, ops[0], ops[len(ops)-1]))
	if bal, _ := b.Balance("bob"); bal != MaxKeys+11 {
		t.Fatalf("bob=%d, want %d: the oldest key was forgotten, the newest kept", bal, MaxKeys+11)
	}
}

// TestKeysSurviveSnapshot: the key table and the bank's clock are part of the snapshot,
// so a replica restored from one answers a retry as the others do; a version 1
// snapshot (no keys) still restores.
func TestKeysSurviveSnapshot(t *testing.T) {
	b := New()
	dep := Op{Kind: KindDeposit, Account: "alice", Amount: 100, Key: "k1"}
	apply(t, b, keyed(1, time.Hour, dep, Op{Kind: KindDeposit, Account: "bob", Amount: 1, Key: "k2"}))
	r := New()
	if err := r.Restore(io.NopCloser(strings.NewReader(persisted(t, b)))); err != nil {
		t.Fatal(err)
	}
	for _, x := range []*Bank{b, r} {
		got := apply(t, x, keyed(2, time.Hour+time.Second, dep))
		if !resultsEqual(got, BatchResult{Results: []Result{{Balance: 100}}}) {
			t.Fatalf("retry answered %+v", got)
		}
		apply(t, x, keyed(3, time.Hour+KeyRetention+time.Second, Op{Kind: KindDeposit, Account: "carol", Amount: 1, Key: "k3"}))
	}
	if x, y := persisted(t, b), persisted(t, r); x != y {
		t.Fatalf("restored replica diverged:\n%s\n%s", x, y)
	}
	v1 := `{"version":1,"accounts":{"alice":5},"sessions":{}}`
	if err := r.Restore(io.NopCloser(bytes.NewBufferString(v1))); err != nil {
		t.Fatalf("version 1 snapshot: %v", err)
	}
	if got := apply(t, r, keyed(9, 0, dep)); !resultsEqual(got, BatchResult{Results: []Result{{Balance: 105}}}) {
		t.Fatalf("after a version 1 restore: %+v", got)
	}
}

// TestEntryTypes: a batch without keys keeps the original entry type (replicas that
// know only it agree on it); keys and time travel in the keyed type; a bad key spoils
// the entry.
func TestEntryTypes(t *testing.T) {
	plain := Batch{Session: "s", Seq: 1, Time: 5, Ops: []Op{{Kind: KindDeposit, Account: "a", Amount: 1}}}
	if enc := plain.Encode(); enc[0] != formatV1 || enc[1] != entryBatch {
		t.Fatalf("unkeyed batch encoded as type %d", enc[1])
	}
	k := Batch{Session: "s", Seq: 1, Time: 5, Ops: []Op{{Kind: KindDeposit, Account: "a", Amount: 1}, {Kind: KindWithdraw, Account: "b", Amount: 2, Key: "x-1"}}}
	enc := k.Encode()
	back, err := DecodeBatch(enc)
	if enc[1] != entryKeyedBatch || err != nil || fmt.Sprint(back) != fmt.Sprint(k) {
		t.Fatalf("keyed round trip: type %d, %+v, %v", enc[1], back, err)
	}
	for _, bad := range []string{"has space", string(bytes.Repeat([]byte("k"), MaxKeyLen+1)), "ctl\x01"} {
		b := Batch{Session: "s", Seq: 1, Ops: []Op{{Kind: KindDeposit, Account: "a", Amount: 1, Key: bad}}}
		if _, err := DecodeBatch(b.Encode()); err == nil {
			t.Errorf("key %q decoded", bad)
		}
	}
}

// persisted is the bank's snapshot as written: all its state.
func persisted(t *testing.T, b *Bank) string {
	t.Helper()
	snap, err := b.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	var sink memSink
	if err := snap.Persist(&sink); err != nil {
		t.Fatal(err)
	}
	return sink.String()
}
