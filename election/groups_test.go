package election_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"

	"github.com/hashicorp/raft"

	"github.com/quorumq/quorumq/election"
	"github.com/quorumq/quorumq/election/electiontest"
	"github.com/quorumq/quorumq/internal/transport"
)

// startGroups runs groups Raft groups on nodes simulated processes (one Mux each), every
// group on every node, all bootstrapped with the same configuration so that leadership
// spreads. inmem swaps the bolt files for in-memory stores, to measure raft and the
// transport alone. It returns nodes[process][group] and their FSMs likewise.
func startGroups(t testing.TB, nodes, groups int, timing election.Timing, inmem bool) ([][]*election.Node, [][]*electiontest.Recorder) {
	t.Helper()
	peers := make([]election.Peer, nodes)
	muxes := make([]*transport.Mux, nodes)
	all := make([][]*election.Node, nodes)
	recs := make([][]*electiontest.Recorder, nodes)
	for i := range nodes {
		m := electiontest.NewMux(t, "")
		muxes[i] = m
		peers[i] = election.Peer{ID: fmt.Sprintf("p%d", i), Addr: string(m.Addr())}
		all[i] = make([]*election.Node, groups)
		recs[i] = make([]*electiontest.Recorder, groups)
	}
	type job struct{ node, group int }
	jobs := make(chan job)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				rec := &electiontest.Recorder{}
				cfg := election.Config{
					Group: fmt.Sprintf("g%d", j.group), ID: peers[j.node].ID,
					DataDir: filepath.Join(t.TempDir(), "d"), Mux: muxes[j.node],
					FSM: rec, Timing: timing, Peers: peers, Logger: electiontest.Logger(),
				}
				if inmem {
					cfg.LogStore, cfg.StableStore = raft.NewInmemStore(), raft.NewInmemStore()
					cfg.SnapshotStore = raft.NewInmemSnapshotStore()
				}
				n, err := election.Open(context.Background(), cfg)
				mu.Lock()
				if err != nil && firstErr == nil {
					firstErr = err
				}
				all[j.node][j.group], recs[j.node][j.group] = n, rec
				mu.Unlock()
			}
		}()
	}
	for g := range groups {
		// The member that starts first tends to win the first election: rotate it.
		for k := range nodes {
			jobs <- job{(g + k) % nodes, g}
		}
	}
	close(jobs)
	wg.Wait()
	t.Cleanup(func() {
		for _, ns := range all {
			for _, n := range ns {
				if n != nil {
					n.Close()
				}
			}
		}
	})
	if firstErr != nil {
		t.Fatalf("open groups: %v", firstErr)
	}
	return all, recs
}
