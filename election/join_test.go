package election

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"

	"github.com/quorumq/quorumq/internal/transport"
)

// nopFSM applies nothing: the join handler is all these tests look at. (electiontest's
// FSMs are out of reach here: it imports this package.)
type nopFSM struct{}

func (nopFSM) Apply(*raft.Log) any                 { return nil }
func (nopFSM) Snapshot() (raft.FSMSnapshot, error) { return nopSnapshot{}, nil }
func (nopFSM) Restore(rc io.ReadCloser) error      { return rc.Close() }

type nopSnapshot struct{}

func (nopSnapshot) Persist(s raft.SnapshotSink) error { return s.Close() }
func (nopSnapshot) Release()                          {}

func loopbackMux(t *testing.T) *transport.Mux {
	t.Helper()
	m, err := transport.New(transport.Config{BindAddr: "127.0.0.1:0", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// askJoin sends p's join request to the member at addr, as askToJoin does, and decodes
// the answer.
func askJoin(t *testing.T, from *transport.Mux, addr string, p Peer) ([]byte, error) {
	t.Helper()
	req, _ := json.Marshal(p)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := from.Call(ctx, raft.ServerAddress(addr), "g", methodJoin, req)
	if err != nil {
		return nil, err
	}
	return decodeReply(resp)
}

// openUnconfigured opens member x of group g on a term stored without any log (a member
// that voted before it received an entry): raft runs on it and knows no configuration
// until a leader sends one. open opens more members of g.
func openUnconfigured(t *testing.T) (x *Node, muxX *transport.Mux, open func(id, dir string, mux *transport.Mux, peers []Peer) *Node) {
	t.Helper()
	dirX := t.TempDir()
	bolt, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(dirX, "raft.db")})
	if err == nil {
		err = bolt.SetUint64(KeyCurrentTerm, 1)
		bolt.Close()
	}
	if err != nil {
		t.Fatal(err)
	}
	open = func(id, dir string, mux *transport.Mux, peers []Peer) *Node {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		n, err := Open(ctx, Config{Group: "g", ID: id, DataDir: dir, Mux: mux, FSM: nopFSM{}, Peers: peers, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatalf("Open %s: %v", id, err)
		}
		t.Cleanup(func() { n.Close() })
		return n
	}
	muxX = loopbackMux(t)
	x = open("x", dirX, muxX, nil)
	if n := len(x.Raft().GetConfiguration().Configuration().Servers); n != 0 {
		t.Fatalf("x knows %d members; the test needs it to know none", n)
	}
	return x, muxX, open
}

// A member whose raft runs without a configuration yet (between its start and its
// bootstrap, or admitted but not yet reached by the leader) answers a join "pending"
// at once. It used to wait for a leader, which a new group could only elect with the
// asking member's vote: the asker waited out its whole join call.
func TestJoinPendingUntilConfigured(t *testing.T) {
	x, muxX, open := openUnconfigured(t)
	muxY := loopbackMux(t)
	y := Peer{ID: "y", Addr: string(muxY.Addr())}
	if _, err := askJoin(t, muxY, string(muxX.Addr()), y); !errors.Is(err, errPending) {
		t.Fatalf("join asked of a member without a configuration = %v, want %v", err, errPending)
	}

	// Told "pending", y counts x as not running the group and bootstraps them both;
	// x votes for it, and learns the configuration from it.
	peers := []Peer{{ID: "x", Addr: string(muxX.Addr())}, y}
	open("y", filepath.Join(t.TempDir(), "y"), muxY, peers)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := x.WaitLeader(ctx); err != nil {
		t.Fatal(err)
	}
	for len(x.Raft().GetConfiguration().Configuration().Servers) == 0 {
		if err := x.pause(ctx, 20*time.Millisecond); err != nil {
			t.Fatalf("x never learned the configuration: %v", err)
		}
	}
	// Now x admits: y, in the bootstrap entry, is answered with that configuration.
	resp, err := askJoin(t, muxY, string(muxX.Addr()), y)
	var boot []Peer
	if err == nil {
		err = json.Unmarshal(resp, &boot)
	}
	if err != nil || !slices.Equal(boot, peers) {
		t.Fatalf("join asked of a configured member = %v, %v; want %v", boot, err, peers)
	}
}

// A member of a Fresh group bootstraps without asking its peers whether the group
// runs; without Fresh it asks every one of them first.
func TestFreshBootstrapsWithoutAsking(t *testing.T) {
	for _, fresh := range []bool{true, false} {
		muxX, muxY, muxZ := loopbackMux(t), loopbackMux(t), loopbackMux(t)
		var asked atomic.Int32
		for _, m := range []*transport.Mux{muxY, muxZ} {
			m.Handle("g", methodJoin, func(context.Context, []byte) ([]byte, error) {
				asked.Add(1)
				return reply(codePending, nil), nil
			})
		}
		peers := []Peer{{ID: "x", Addr: string(muxX.Addr())}, {ID: "y", Addr: string(muxY.Addr())}, {ID: "z", Addr: string(muxZ.Addr())}}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		n, err := Open(ctx, Config{Group: "g", ID: "x", DataDir: t.TempDir(), Mux: muxX, FSM: nopFSM{}, Peers: peers, Fresh: fresh,
			Logger: slog.New(slog.DiscardHandler)})
		cancel()
		if err != nil {
			t.Fatalf("fresh %v: %v", fresh, err)
		}
		got := peersOf(n.Raft().GetConfiguration().Configuration())
		n.Close()
		if !slices.Equal(got, peers) {
			t.Errorf("fresh %v: bootstrapped with %v, want %v", fresh, got, peers)
		}
		if want := map[bool]int32{true: 0, false: 2}[fresh]; asked.Load() != want {
			t.Errorf("fresh %v: %d peers asked, want %d", fresh, asked.Load(), want)
		}
	}
}

// A member that raft has not given a configuration naming it a voter refuses TimeoutNow,
// from a leader or from its own Campaign, and keeps its term: a leader handing over to a
// member it had just added, before that member received anything, made it stand with
// an empty log in a term above the leader's, which deposed the leader and left the group
// leaderless until a heartbeat timeout.
func TestUnconfiguredMemberRefusesToStand(t *testing.T) {
	x, muxX, _ := openUnconfigured(t)
	term := x.Raft().Stats()["term"]
	leader, err := loopbackMux(t).Transport("g")
	if err != nil {
		t.Fatal(err)
	}
	defer leader.Close()
	hdr := raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte("y"), Addr: []byte(leader.LocalAddr())}
	err = leader.TimeoutNow("x", muxX.Addr(), &raft.TimeoutNowRequest{RPCHeader: hdr}, new(raft.TimeoutNowResponse))
	if err == nil || !strings.Contains(err.Error(), errNotConfigured.Error()) {
		t.Errorf("TimeoutNow to a member without a configuration: %v, want %v", err, errNotConfigured)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := x.Campaign(ctx); err != nil {
		t.Errorf("Campaign of a member without a configuration: %v, want nothing done", err)
	}
	if err := x.trans.TimeoutNowLocal(ctx, hdr); !errors.Is(err, errNotConfigured) {
		t.Errorf("local TimeoutNow to a member without a configuration: %v, want %v", err, errNotConfigured)
	}
	if st, now := x.Raft().State(), x.Raft().Stats()["term"]; st != raft.Follower || now != term {
		t.Errorf("x is %v in term %s after the refusals, want a follower in term %s", st, now, term)
	}
}
