package transport

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// countFSM records the commands it applied.
type countFSM struct {
	mu   sync.Mutex
	cmds []string
}

func (f *countFSM) Apply(l *raft.Log) any {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cmds = append(f.cmds, string(l.Data))
	return len(f.cmds)
}

func (f *countFSM) applied() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.cmds...)
}

func (f *countFSM) Snapshot() (raft.FSMSnapshot, error) { return cmdSnapshot(f.applied()), nil }

func (f *countFSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	var cmds []string
	if err := json.NewDecoder(rc).Decode(&cmds); err != nil {
		return err
	}
	f.mu.Lock()
	f.cmds = cmds
	f.mu.Unlock()
	return nil
}

type cmdSnapshot []string

func (s cmdSnapshot) Persist(sink raft.SnapshotSink) error {
	if err := json.NewEncoder(sink).Encode([]string(s)); err != nil {
		sink.Cancel()
		return err
	}
	return sink.Close()
}

func (cmdSnapshot) Release() {}

// startRaft runs one member of group on m with in-memory stores.
func startRaft(t *testing.T, m *Mux, group string, id raft.ServerID, bootstrap []raft.Server, tweak func(*raft.Config)) (*raft.Raft, *countFSM) {
	t.Helper()
	trans := openGroup(t, m, group)
	conf := raft.DefaultConfig()
	conf.LocalID = id
	conf.HeartbeatTimeout = time.Second
	conf.ElectionTimeout = time.Second
	conf.LeaderLeaseTimeout = 500 * time.Millisecond
	conf.CommitTimeout = 200 * time.Millisecond
	conf.Logger = hclog.New(&hclog.LoggerOptions{Name: group, Level: hclog.Error, Output: io.Discard})
	if tweak != nil {
		tweak(conf)
	}
	logs, snaps := raft.NewInmemStore(), raft.NewInmemSnapshotStore()
	if bootstrap != nil {
		if err := raft.BootstrapCluster(conf, logs, logs, snaps, trans, raft.Configuration{Servers: bootstrap}); err != nil {
			t.Fatal(err)
		}
	}
	fsm := &countFSM{}
	r, err := raft.NewRaft(conf, fsm, logs, logs, snaps, trans)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Shutdown().Error() })
	return r, fsm
}

// eventually polls cond until it holds or a generous deadline passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestRaftGroupsShareOneListener runs 50 real raft groups on three muxes (one
// listener per "process"): every group elects a leader and replicates an entry.
func TestRaftGroupsShareOneListener(t *testing.T) {
	const nodes, groups = 3, 50
	muxes := make([]*Mux, nodes)
	servers := make([]raft.Server, nodes)
	for i := range muxes {
		muxes[i] = newMux(t)
		servers[i] = raft.Server{ID: raft.ServerID(fmt.Sprintf("n%d", i)), Address: muxes[i].Addr()}
	}
	type member struct {
		r   *raft.Raft
		fsm *countFSM
	}
	cluster := make([][]member, groups)
	for gi := range cluster {
		name := fmt.Sprintf("p/topic/%d", gi)
		for i, m := range muxes {
			r, fsm := startRaft(t, m, name, servers[i].ID, servers, nil)
			cluster[gi] = append(cluster[gi], member{r, fsm})
		}
	}

	var wg sync.WaitGroup
	for gi, members := range cluster {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cmd := fmt.Sprintf("hello %d", gi)
			deadline := time.Now().Add(60 * time.Second)
			for {
				var err error
				for _, mb := range members {
					if mb.r.State() == raft.Leader {
						err = mb.r.Apply([]byte(cmd), 10*time.Second).Error()
						if err == nil {
							goto applied
						}
					}
				}
				if time.Now().After(deadline) {
					t.Errorf("group %d: no leader applied an entry in time (last error %v)", gi, err)
					return
				}
				time.Sleep(50 * time.Millisecond)
			}
		applied:
			for i, mb := range members {
				for len(mb.fsm.applied()) == 0 {
					if time.Now().After(deadline) {
						t.Errorf("group %d: member %d never applied the entry", gi, i)
						return
					}
					time.Sleep(20 * time.Millisecond)
				}
				if got := mb.fsm.applied(); got[0] != cmd {
					t.Errorf("group %d member %d applied %q, want %q", gi, i, got, cmd)
				}
			}
		}()
	}
	wg.Wait()

	// Two shared connections (lanes) per ordered pair of processes, not per group.
	for _, m := range muxes {
		m.mu.RLock()
		n := len(m.conns)
		m.mu.RUnlock()
		if n > 4*(nodes-1) {
			t.Errorf("mux %s has %d connections for %d groups, want at most %d", m.Addr(), n, groups, 4*(nodes-1))
		}
	}
}

// TestRaftSnapshotAndLeadershipTransfer: a member that joins late catches up
// through InstallSnapshot streamed over the mux, then takes over leadership
// through TimeoutNow.
func TestRaftSnapshotAndLeadershipTransfer(t *testing.T) {
	const group, entries = "atm", 200
	muxes := []*Mux{newMux(t), newMux(t), newMux(t)}
	servers := make([]raft.Server, len(muxes))
	for i, m := range muxes {
		servers[i] = raft.Server{ID: raft.ServerID(fmt.Sprintf("n%d", i)), Address: m.Addr()}
	}
	small := func(c *raft.Config) { c.TrailingLogs = 10; c.SnapshotThreshold = 1 << 20 }
	rafts := make([]*raft.Raft, len(muxes))
	fsms := make([]*countFSM, len(muxes))
	for i := range 2 { // the third member's process does not have the group yet
		rafts[i], fsms[i] = startRaft(t, muxes[i], group, servers[i].ID, servers, small)
	}
	var leader *raft.Raft
	eventually(t, "a leader", func() bool {
		for _, r := range rafts[:2] {
			if r.State() == raft.Leader {
				leader = r
				return true
			}
		}
		return false
	})
	payload := strings.Repeat("x", 1000)
	for i := range entries {
		if err := leader.Apply([]byte(fmt.Sprintf("%d %s", i, payload)), 10*time.Second).Error(); err != nil {
			t.Fatal(err)
		}
	}
	// Both members compact their logs: under load leadership may move between them, and
	// whichever leads must then have only a snapshot to offer the late member.
	for _, r := range rafts[:2] {
		if err := r.Snapshot().Error(); err != nil {
			t.Fatal(err)
		}
	}

	rafts[2], fsms[2] = startRaft(t, muxes[2], group, servers[2].ID, nil, small)
	eventually(t, "the late member to catch up", func() bool { return len(fsms[2].applied()) == entries })
	// Raft records the installed snapshot only after the FSM has restored it, so the
	// entries can be there a moment before the record is (1 failure in a make test).
	eventually(t, "the late member to record its snapshot", func() bool {
		return rafts[2].Stats()["last_snapshot_index"] != "0"
	})
	if got, want := fsms[2].applied()[entries-1], fmt.Sprintf("%d %s", entries-1, payload); got != want {
		t.Fatalf("late member's last entry %.20q, want %.20q", got, want)
	}

	if err := leader.LeadershipTransferToServer(servers[2].ID, servers[2].Address).Error(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the late member to lead", func() bool { return rafts[2].State() == raft.Leader })
	if err := rafts[2].Apply([]byte("after transfer"), 10*time.Second).Error(); err != nil {
		t.Fatal(err)
	}
	for i, f := range fsms {
		eventually(t, fmt.Sprintf("member %d to apply the last entry", i), func() bool { return len(f.applied()) == entries+1 })
	}
}
