package election

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// TestHeartbeatInMemory: the transport answers a heartbeat in line with the rest of
// its batch only when raft answers it without writing its term first, which is as a
// follower and for a term no newer than its own.
func TestHeartbeatInMemory(t *testing.T) {
	// open runs member x of group g on in-memory stores holding term stored (0: none),
	// bootstrapping it with others when stored is 0 (none: a group of one).
	open := func(t *testing.T, stored uint64, others ...Peer) *Node {
		t.Helper()
		stores := raft.NewInmemStore()
		if stored > 0 {
			if err := stores.SetUint64([]byte("CurrentTerm"), stored); err != nil {
				t.Fatal(err)
			}
		}
		mux := loopbackMux(t)
		var peers []Peer
		if len(others) > 0 {
			peers = append([]Peer{{ID: "x", Addr: string(mux.Addr())}}, others...)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		n, err := Open(ctx, Config{Group: "g", ID: "x", Mux: mux, FSM: nopFSM{}, Peers: peers,
			LogStore: stores, StableStore: stores, SnapshotStore: raft.NewInmemSnapshotStore(), Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { n.Close() })
		return n
	}
	tests := []struct {
		name  string
		node  func(t *testing.T) *Node
		state raft.RaftState // the state raft settles in
		// whether a heartbeat of the term before the node's, of its term and of the
		// next is answered in memory
		older, same, newer bool
	}{
		{"before raft runs", func(*testing.T) *Node { return &Node{} }, 0, false, false, false},
		// A stored term and no configuration: raft stays a follower and stands for nothing.
		{"follower", func(t *testing.T) *Node { return open(t, 3) }, raft.Follower, true, true, false},
		{"leader", func(t *testing.T) *Node { return open(t, 0) }, raft.Leader, false, false, false},
		// Its only peer's process does not run the group: every vote is refused.
		{"candidate", func(t *testing.T) *Node {
			return open(t, 0, Peer{ID: "y", Addr: string(loopbackMux(t).Addr())})
		}, raft.Candidate, false, false, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			n := tc.node(t)
			term := uint64(3) // any: raft does not run
			if r := n.Raft(); r != nil {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				for r.State() != tc.state {
					if err := n.pause(ctx, 20*time.Millisecond); err != nil {
						t.Fatalf("raft is %v, never %v: %v", r.State(), tc.state, err)
					}
				}
				term = r.CurrentTerm()
			}
			for _, c := range []struct {
				name string
				term uint64
				want bool
			}{{"older", term - 1, tc.older}, {"same", term, tc.same}, {"newer", term + 1, tc.newer}} {
				if got := n.heartbeatInMemory(c.term); got != c.want {
					t.Errorf("heartbeat of the %s term %d (node at %d) answered in memory = %v, want %v", c.name, c.term, term, got, c.want)
				}
			}
		})
	}
}
