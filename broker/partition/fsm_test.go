package partition

import (
	"bytes"
	"fmt"
	"io"
	"reflect"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// memStore is an in-memory Store for the state machine's tests.
type memStore struct {
	st   State
	msgs [][]byte
}

func newMemStore() *memStore { return &memStore{st: NewState()} }

func (s *memStore) Load() (State, error) { return s.st.clone(), nil }

func (s *memStore) Commit(m *Mutation) func() error {
	err := s.commit(m)
	return func() error { return err }
}

func (s *memStore) commit(m *Mutation) error {
	if m.First != uint64(len(s.msgs)) {
		return fmt.Errorf("gap: first %d, have %d", m.First, len(s.msgs))
	}
	for _, msg := range m.Msgs {
		s.msgs = append(s.msgs, append([]byte(nil), msg...))
	}
	s.st.Applied, s.st.Next, s.st.Bytes = m.Applied, m.Next, m.Bytes
	for k, v := range m.Consumers {
		s.st.Consumers[k] = v
	}
	for k, v := range m.Producers {
		s.st.Producers[k] = v
	}
	return nil
}

func (s *memStore) Fit(from, to, maxBytes uint64) (n, size uint64, err error) {
	for off := from; off < to; off++ {
		l := uint64(len(s.msgs[off]))
		if n > 0 && size+l > maxBytes {
			break
		}
		n, size = n+1, size+l
	}
	return n, size, nil
}

func (s *memStore) Messages(from uint64, n uint32) ([][]byte, error) {
	return s.msgs[from : from+uint64(n)], nil
}

func (s *memStore) Restore(st State) error { s.st = st.clone(); return nil }

func msgs(ss ...string) [][]byte {
	out := make([][]byte, len(ss))
	for i, s := range ss {
		out[i] = []byte(s)
	}
	return out
}

type step struct {
	cmd  []byte
	want interface{} // []ProduceResult, ConsumeResult, RegisterResult or Status (first byte)
}

func produce(b ...Batch) []byte { return EncodeProduce(b) }

func consume(id string, max uint32) []byte {
	return EncodeConsume(ConsumeRequest{Consumer: id, Max: max, MaxBytes: 1 << 20})
}

func truncate(before uint64) []byte { return EncodeTruncate(Truncate{Before: before}) }

func consumeAt(id string, expected uint64, max uint32) []byte {
	return EncodeConsume(ConsumeRequest{Consumer: id, HasExpected: true, Expected: expected, Max: max, MaxBytes: 1 << 20})
}

func TestApply(t *testing.T) {
	tests := []struct {
		name  string
		steps []step
	}{
		{"offsets are consecutive across batches and entries", []step{
			{produce(Batch{Msgs: msgs("a", "b")}, Batch{Msgs: msgs("c")}), []ProduceResult{{First: 0, Count: 2}, {First: 2, Count: 1}}},
			{produce(Batch{Msgs: msgs("d")}), []ProduceResult{{First: 3, Count: 1}}},
		}},
		{"a retried batch is acknowledged with the same offsets, stored once", []step{
			{produce(Batch{Producer: "p", Seq: 1, Msgs: msgs("a", "b")}), []ProduceResult{{First: 0, Count: 2}}},
			{produce(Batch{Producer: "p", Seq: 1, Msgs: msgs("a", "b")}), []ProduceResult{{Status: StatusDuplicate, First: 0, Count: 2}}},
			{produce(Batch{Producer: "p", Seq: 2, Msgs: msgs("c")}), []ProduceResult{{First: 2, Count: 1}}},
			{produce(Batch{Producer: "p", Seq: 1, Msgs: msgs("a")}), []ProduceResult{{Status: StatusStaleSequence}}},
			{produce(Batch{Producer: "q", Seq: 1, Msgs: msgs("x")}), []ProduceResult{{First: 3, Count: 1}}},
		}},
		{"duplicates inside one group-committed entry", []step{
			{produce(Batch{Producer: "p", Seq: 7, Msgs: msgs("a")}, Batch{Producer: "p", Seq: 7, Msgs: msgs("a")}),
				[]ProduceResult{{First: 0, Count: 1}, {Status: StatusDuplicate, First: 0, Count: 1}}},
		}},
		{"no producer id: no de-duplication", []step{
			{produce(Batch{Msgs: msgs("a")}), []ProduceResult{{First: 0, Count: 1}}},
			{produce(Batch{Msgs: msgs("a")}), []ProduceResult{{First: 1, Count: 1}}},
		}},
		{"register is idempotent and keeps the offset", []step{
			{EncodeRegister("c"), RegisterResult{Offset: 0}},
			{produce(Batch{Msgs: msgs("a", "b")}), []ProduceResult{{First: 0, Count: 2}}},
			{consume("c", 1), ConsumeResult{From: 0, Count: 1, Next: 2}},
			{EncodeRegister("c"), RegisterResult{Offset: 1}},
		}},
		{"consume advances, stops at the end", []step{
			{EncodeRegister("c"), RegisterResult{}},
			{produce(Batch{Msgs: msgs("a", "b", "c")}), []ProduceResult{{First: 0, Count: 3}}},
			{consume("c", 2), ConsumeResult{From: 0, Count: 2, Next: 3}},
			{consume("c", 2), ConsumeResult{From: 2, Count: 1, Next: 3}},
			{consume("c", 2), ConsumeResult{From: 3, Count: 0, Next: 3}},
		}},
		{"unknown consumer", []step{
			{consume("nobody", 1), ConsumeResult{Status: StatusUnknownConsumer}},
		}},
		{"a retried consume returns the same messages", []step{
			{EncodeRegister("c"), RegisterResult{}},
			{produce(Batch{Msgs: msgs("a", "b", "c")}), []ProduceResult{{First: 0, Count: 3}}},
			{consumeAt("c", 0, 2), ConsumeResult{From: 0, Count: 2, Next: 3}},
			{consumeAt("c", 0, 2), ConsumeResult{From: 0, Count: 2, Next: 3}},
			{consumeAt("c", 2, 2), ConsumeResult{From: 2, Count: 1, Next: 3}},
			{consumeAt("c", 5, 2), ConsumeResult{Status: StatusOffsetAhead, From: 3, Next: 3}},
			{consume("c", 2), ConsumeResult{From: 3, Count: 0, Next: 3}},
		}},
		{"truncate deletes a prefix and moves the consumers behind it", []step{
			{EncodeRegister("slow"), RegisterResult{}},
			{EncodeRegister("fast"), RegisterResult{}},
			{produce(Batch{Msgs: msgs("a", "b", "c", "d")}), []ProduceResult{{First: 0, Count: 4}}},
			{consume("fast", 3), ConsumeResult{From: 0, Count: 3, Next: 4}},
			{truncate(2), TruncateResult{Start: 2}},
			{truncate(1), TruncateResult{Start: 2}}, // never backwards
			{consume("slow", 1), ConsumeResult{From: 2, Count: 1, Next: 4}},
			{consume("fast", 1), ConsumeResult{From: 3, Count: 1, Next: 4}},
			{consumeAt("slow", 0, 1), ConsumeResult{From: 2, Count: 1, Next: 4}}, // a retry of deleted ones: from the start
			{EncodeRegister("new"), RegisterResult{Offset: 2}},
			{truncate(100), TruncateResult{Start: 4}}, // at most everything
			{produce(Batch{Msgs: msgs("e")}), []ProduceResult{{First: 4, Count: 1}}},
			{consume("new", 5), ConsumeResult{From: 4, Count: 1, Next: 5}},
		}},
		{"a stamped produce is a produce", []step{
			{StampProduce(produce(Batch{Msgs: msgs("a")}), time.UnixMilli(1)), []ProduceResult{{First: 0, Count: 1}}},
			{[]byte{CmdProduce, version2, 0}, []ProduceResult{}},
			{[]byte{CmdTruncate, version1, 0}, TruncateResult{Status: StatusBadCommand}},
		}},
		{"bad commands change nothing", []step{
			{[]byte{99, 1}, StatusBadCommand},
			{[]byte{CmdProduce, 9}, StatusBadCommand},
			{[]byte{CmdProduce}, StatusBadCommand},
			{EncodeProduce([]Batch{{Msgs: msgs("a")}})[:9], []ProduceResult{}},
			{[]byte{CmdConsume, version1, 0, 0}, ConsumeResult{Status: StatusBadCommand}},
			{produce(Batch{Msgs: msgs("a")}), []ProduceResult{{First: 0, Count: 1}}},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := New(newMemStore())
			if err != nil {
				t.Fatal(err)
			}
			for i, s := range tt.steps {
				got := f.Apply(&raft.Log{Index: uint64(i + 1), Type: raft.LogCommand, Data: s.cmd})
				checkResult(t, i, got, s.want)
			}
		})
	}
}

func checkResult(t *testing.T, i int, got, want interface{}) {
	t.Helper()
	b, ok := got.([]byte)
	if !ok {
		t.Fatalf("step %d: result %T, want []byte", i, got)
	}
	var dec interface{}
	var err error
	switch want.(type) {
	case []ProduceResult:
		var rs []ProduceResult
		rs, err = DecodeProduceResults(b)
		dec = rs
	case ConsumeResult:
		dec, err = DecodeConsumeResult(b)
	case RegisterResult:
		dec, err = DecodeRegisterResult(b)
	case TruncateResult:
		dec, err = DecodeTruncateResult(b)
	case Status:
		dec = Status(b[0])
	}
	if err != nil {
		t.Fatalf("step %d: decode: %v", i, err)
	}
	if !reflect.DeepEqual(dec, want) {
		t.Fatalf("step %d: got %+v, want %+v", i, dec, want)
	}
}

func TestProduceSize(t *testing.T) {
	bs := []Batch{{Producer: "p", Seq: 1, Msgs: msgs("a", "b")}, {Msgs: msgs("c")}, {Producer: "q", Seq: 7, Msgs: msgs("d", "e", "")}}
	want := ProduceOverhead
	for _, b := range bs {
		want += ProduceSize(b)
	}
	if got := len(StampProduce(EncodeProduce(bs), time.UnixMilli(1))); got != want {
		t.Fatalf("EncodeProduce took %d bytes, ProduceSize added up to %d", got, want)
	}
}

func TestConsumeMaxBytes(t *testing.T) {
	tests := []struct {
		name     string
		split    bool // produce in an earlier entry (store) or in the same batch (mutation)
		maxBytes uint32
		want     uint32
	}{
		{"store, fits two", true, 6, 2},
		{"store, first is bigger than the limit", true, 1, 1},
		{"mutation, fits two", false, 6, 2},
		{"mutation, all", false, 100, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, _ := New(newMemStore())
			logs := []*raft.Log{
				{Index: 1, Type: raft.LogCommand, Data: EncodeRegister("c")},
				{Index: 2, Type: raft.LogCommand, Data: produce(Batch{Msgs: msgs("aaa", "bbb", "ccc")})},
			}
			cons := &raft.Log{Index: 3, Type: raft.LogCommand, Data: EncodeConsume(ConsumeRequest{Consumer: "c", Max: 10, MaxBytes: tt.maxBytes})}
			var got interface{}
			if tt.split {
				f.ApplyBatch(logs)
				got = f.Apply(cons)
			} else {
				got = f.ApplyBatch(append(logs, cons))[2]
			}
			checkResult(t, 0, got, ConsumeResult{From: 0, Count: tt.want, Next: 3})
			if left, _ := f.Left("c"); left != uint64(3-tt.want) {
				t.Fatalf("left %d", left)
			}
		})
	}
}

func TestAlreadyAppliedEntriesAreSkipped(t *testing.T) {
	store := newMemStore()
	f, _ := New(store)
	f.Apply(&raft.Log{Index: 1, Type: raft.LogCommand, Data: produce(Batch{Msgs: msgs("a")})})
	f.Apply(&raft.Log{Index: 2, Type: raft.LogConfiguration})

	// A restart: raft replays from the last snapshot, the store already has entry 1.
	f2, _ := New(store)
	out := f2.ApplyBatch([]*raft.Log{
		{Index: 1, Type: raft.LogCommand, Data: produce(Batch{Msgs: msgs("a")})},
		{Index: 3, Type: raft.LogCommand, Data: produce(Batch{Msgs: msgs("b")})},
	})
	if out[0] != nil {
		t.Fatalf("entry 1 applied twice: %v", out[0])
	}
	checkResult(t, 1, out[1], []ProduceResult{{First: 1, Count: 1}})
	if len(store.msgs) != 2 || store.st.Applied != 3 {
		t.Fatalf("store has %d messages, applied %d", len(store.msgs), store.st.Applied)
	}
}

func TestSnapshotRestore(t *testing.T) {
	srcStore := newMemStore()
	src, _ := New(srcStore)
	src.ApplyBatch([]*raft.Log{
		{Index: 1, Type: raft.LogCommand, Data: EncodeRegister("c")},
		{Index: 2, Type: raft.LogCommand, Data: produce(Batch{Producer: "p", Seq: 3, Msgs: msgs("a", "bb")})},
		{Index: 3, Type: raft.LogCommand, Data: consume("c", 1)},
	})
	snap, _ := src.Snapshot()
	sink := &bufSink{}
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}

	// The snapshot store writes the message bodies before the FSM restores the state.
	dstStore := &memStore{st: NewState(), msgs: srcStore.msgs}
	dst, _ := New(dstStore)
	if err := dst.Restore(io.NopCloser(bytes.NewReader(sink.Bytes()))); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(EncodeState(dst.st), EncodeState(src.st)) {
		t.Fatalf("restored %+v, want %+v", dst.st, src.st)
	}
	// The producer table survived: a retry is still recognised.
	out := dst.ApplyBatch([]*raft.Log{{Index: 4, Type: raft.LogCommand, Data: produce(Batch{Producer: "p", Seq: 3})}})
	checkResult(t, 0, out[0], []ProduceResult{{Status: StatusDuplicate, First: 0, Count: 2}})

	// An older snapshot does not roll a replica back.
	old := NewState()
	old.Applied = 1
	var buf bytes.Buffer
	WriteSnapshotPrefix(&buf, old)
	if err := dst.Restore(io.NopCloser(&buf)); err != nil {
		t.Fatal(err)
	}
	if applied, next, bytes, _ := dst.Info(); applied != 4 || next != 2 || bytes != 3 {
		t.Fatalf("after old snapshot: applied %d next %d bytes %d", applied, next, bytes)
	}
}

func TestStateEncoding(t *testing.T) {
	s := NewState()
	s.Applied, s.Next, s.Bytes = 9, 5, 100
	s.Consumers["b"], s.Consumers["a"] = 3, 4
	s.Producers["p"] = Producer{Seq: 2, First: 1, Count: 4}
	got, err := DecodeState(EncodeState(s))
	if err != nil || !reflect.DeepEqual(got, s) {
		t.Fatalf("got %+v %v", got, err)
	}
	for n := range len(EncodeState(s)) {
		if _, err := DecodeState(EncodeState(s)[:n]); err == nil {
			t.Fatalf("truncated state of %d bytes decoded", n)
		}
	}
}

type bufSink struct{ bytes.Buffer }

func (s *bufSink) ID() string    { return "test" }
func (s *bufSink) Cancel() error { return nil }
func (s *bufSink) Close() error  { return nil }
