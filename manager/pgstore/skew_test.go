package pgstore

import (
	"testing"

	"github.com/hashicorp/raft"

	"github.com/quorumq/quorumq/election/electiontest"
	"github.com/quorumq/quorumq/internal/devtools/pgserver"
	"github.com/quorumq/quorumq/manager/meta"
)

// TestVersionSkewHaltsOlderFollower: a manager that meets a command version it does
// not know stops applying instead of refusing it while the others apply it.
func TestVersionSkewHaltsOlderFollower(t *testing.T) {
	pg := pgserver.StartT(t)
	newer := meta.Encode(meta.BrokerUp{ID: "b2", Addr: "h:3", RaftAddr: "h:4"})
	newer[1] = meta.Version + 1
	electiontest.VersionSkew(t, "meta-skew", electiontest.Skew{
		NewFSM: func(id string) raft.FSM { return open(t, pg.DSN(id)) },
		Known:  meta.Encode(meta.BrokerUp{ID: "b1", Addr: "h:1", RaftAddr: "h:2"}),
		Newer:  newer,
		AsKnown: func(cmd []byte) []byte {
			return append([]byte{cmd[0], meta.Version}, cmd[2:]...)
		},
	})
}
