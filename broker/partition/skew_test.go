package partition

import (
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/quorumq/quorumq/election/electiontest"
)

func TestCheckCommand(t *testing.T) {
	for _, tc := range []struct {
		name    string
		cmd     []byte
		unknown bool
	}{
		{"produce", EncodeProduce([]Batch{{Msgs: [][]byte{[]byte("m")}}}), false},
		{"register", EncodeRegister("c"), false},
		{"consume", EncodeConsume(ConsumeRequest{Consumer: "c", Max: 1}), false},
		{"stamped produce (version 2)", StampProduce(EncodeProduce([]Batch{{Msgs: [][]byte{[]byte("m")}}}), time.Unix(1, 0)), false},
		{"truncate", EncodeTruncate(Truncate{Before: 1}), false},
		{"too short to tell: malformed", []byte{CmdProduce}, false},
		{"empty", nil, false},
		{"newer version", []byte{CmdProduce, version2 + 1}, true},
		{"newer type", []byte{99, version1}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := CheckCommand(tc.cmd); (err != nil) != tc.unknown {
				t.Fatalf("CheckCommand = %v; want unknown=%v", err, tc.unknown)
			}
		})
	}
}

// TestVersionSkewHaltsOlderFollower: a replica that meets a command version it does
// not know stops applying instead of answering it StatusBadCommand.
func TestVersionSkewHaltsOlderFollower(t *testing.T) {
	newer := EncodeRegister("c2")
	newer[1] = version1 + 1
	electiontest.VersionSkew(t, "partition-skew", electiontest.Skew{
		NewFSM: func(string) raft.FSM {
			f, err := New(newMemStore())
			if err != nil {
				t.Fatal(err)
			}
			return f
		},
		Known: EncodeRegister("c1"),
		Newer: newer,
		AsKnown: func(cmd []byte) []byte {
			return append([]byte{cmd[0], version1}, cmd[2:]...)
		},
	})
}
