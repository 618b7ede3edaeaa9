package bank

import (
	"reflect"
	"testing"

	"github.com/hashicorp/raft"
)

// FuzzApply feeds arbitrary log entries to the bank and its decoders: garbage must come
// back as CodeMalformed or an error, never a panic or an allocation far beyond the entry,
// and what decodes must survive an encode and decode unchanged.
func FuzzApply(f *testing.F) {
	f.Add(Batch{Session: "s", Seq: 1, Ops: []Op{{Kind: KindDeposit, Account: "a", Amount: 100}, {Kind: KindTransfer, Account: "a", To: "b", Amount: 5}}}.Encode())
	f.Add(Batch{Session: "s", Seq: 2, Ops: []Op{{Kind: KindWithdraw, Account: "a", Amount: -1}}}.Encode())
	f.Add(BatchResult{Code: OK, Results: []Result{{Code: OK, Balance: 3, ToBalance: 4}}}.Encode())
	f.Add([]byte{formatV1, entryBatch, 1, 's', 1, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		if b, err := DecodeBatch(data); err == nil {
			again, err := DecodeBatch(b.Encode())
			if err != nil || !reflect.DeepEqual(again, b) {
				t.Fatalf("%+v encodes to what decodes as %+v (%v)", b, again, err)
			}
		}
		if r, err := DecodeBatchResult(data); err == nil {
			again, err := DecodeBatchResult(r.Encode())
			if err != nil || !reflect.DeepEqual(again, r) {
				t.Fatalf("%+v encodes to what decodes as %+v (%v)", r, again, err)
			}
		}
		bank := New()
		bank.Apply(&raft.Log{Index: 1, Type: raft.LogCommand, Data: Batch{Session: "s0", Seq: 1, Ops: []Op{{Kind: KindDeposit, Account: "a", Amount: 100}}}.Encode()})
		if _, err := DecodeBatchResult(bank.Apply(&raft.Log{Index: 2, Type: raft.LogCommand, Data: data}).([]byte)); err != nil {
			t.Fatalf("Apply returned an undecodable result: %v", err)
		}
	})
}
