package partition

import (
	"bytes"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// FuzzApply feeds arbitrary log entries to the state machine and its decoders: garbage
// must be refused (StatusBadCommand or an error), never panic or allocate more than a
// small multiple of the entry, and a produce that decodes must encode back to itself.
func FuzzApply(f *testing.F) {
	f.Add(EncodeProduce([]Batch{{Producer: "p", Seq: 1, Msgs: [][]byte{[]byte("m1"), {}}}, {Msgs: [][]byte{[]byte("m2")}}}))
	f.Add(EncodeRegister("c"))
	f.Add(EncodeConsume(ConsumeRequest{Consumer: "c", HasExpected: true, Expected: 1, Max: 10, MaxBytes: 1 << 20}))
	f.Add(EncodeProduceResults([]ProduceResult{{Status: StatusOK, First: 1, Count: 2}}))
	f.Add(encodeConsumeResult(ConsumeResult{From: 1, Count: 1, Next: 2}))
	f.Add(encodeRegisterResult(RegisterResult{Offset: 3}))
	f.Add([]byte{CmdProduce, version1, 0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{CmdProduce, version1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xf0})
	f.Add(EncodeTruncate(Truncate{Before: 1, At: 2}))
	f.Add(StampProduce(EncodeProduce([]Batch{{Msgs: [][]byte{[]byte("m")}}}), time.UnixMilli(5)))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) >= 2 && b[0] == CmdProduce && b[1] == version1 {
			if batches, err := decodeProduce(b[2:]); err == nil && !bytes.Equal(EncodeProduce(batches), b) {
				t.Fatalf("%q decodes to batches that encode as %q", b, EncodeProduce(batches))
			}
		}
		if len(b) >= 2 {
			decodeConsume(b[2:])
		}
		DecodeProduceResults(b)
		DecodeConsumeResult(b)
		DecodeRegisterResult(b)
		DecodeTruncateResult(b)
		fsm, err := New(newMemStore())
		if err != nil {
			t.Fatal(err)
		}
		fsm.Apply(&raft.Log{Index: 1, Type: raft.LogCommand, Data: EncodeRegister("c")})
		fsm.Apply(&raft.Log{Index: 2, Type: raft.LogCommand, Data: b})
	})
}
