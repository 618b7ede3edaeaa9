package bank

import (
	"testing"

	"github.com/hashicorp/raft"

	"github.com/quorumq/quorumq/election/electiontest"
)

func TestCheckEntry(t *testing.T) {
	dep := Batch{Session: "s", Seq: 1, Ops: []Op{{Kind: KindDeposit, Account: "a", Amount: 1}}}.Encode()
	keyed := Batch{Session: "s", Seq: 1, Time: 1, Ops: []Op{{Kind: KindTransferOpen, Account: "a", To: "b", Amount: 1, Key: "k"}}}.Encode()
	newKind := Batch{Session: "s", Seq: 1, Ops: []Op{{Kind: KindTransferOpen + 1, Account: "a", Amount: 1}}}.Encode()
	for _, tc := range []struct {
		name    string
		data    []byte
		unknown bool
	}{
		{"batch", dep, false},
		{"keyed batch", keyed, false},
		{"garbled: malformed", dep[:len(dep)-1], false},
		{"too short to tell: malformed", []byte{formatV1}, false},
		{"newer format version", append([]byte{formatV1 + 1}, dep[1:]...), true},
		{"newer entry type", append([]byte{formatV1, entryKeyedBatch + 1}, dep[2:]...), true},
		{"newer operation kind", newKind, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := CheckEntry(tc.data); (err != nil) != tc.unknown {
				t.Fatalf("CheckEntry = %v; want unknown=%v", err, tc.unknown)
			}
		})
	}
}

// TestVersionSkewHaltsOlderFollower: a replica that meets an operation kind it does not
// know stops applying instead of refusing it (CodeMalformed) while the others apply it.
func TestVersionSkewHaltsOlderFollower(t *testing.T) {
	op := Op{Kind: KindTransferOpen + 1, Account: "alice", Amount: 5}
	asDeposit := op
	asDeposit.Kind = KindDeposit
	electiontest.VersionSkew(t, "bank-skew", electiontest.Skew{
		NewFSM: func(string) raft.FSM { return New() },
		Known:  Batch{Session: "s1", Seq: 1, Ops: []Op{{Kind: KindDeposit, Account: "alice", Amount: 1}}}.Encode(),
		Newer:  Batch{Session: "s2", Seq: 1, Ops: []Op{op}}.Encode(),
		AsKnown: func([]byte) []byte {
			return Batch{Session: "s2", Seq: 1, Ops: []Op{asDeposit}}.Encode()
		},
	})
}
