package transport

import (
	"fmt"
	"io"
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

func (f *countFSM) Snapshot() (raft.FSMSnapshot, error) { return nil, fmt.Errorf("not supported") }
func (f *countFSM) Restore(io.ReadCloser) error         { return fmt.Errorf("not supported") }

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
			trans := openGroup(t, m, name)
			conf := raft.DefaultConfig()
			conf.LocalID = servers[i].ID
			conf.HeartbeatTimeout = time.Second
			conf.ElectionTimeout = time.Second
			conf.LeaderLeaseTimeout = 500 * time.Millisecond
			conf.CommitTimeout = 200 * time.Millisecond
			conf.Logger = hclog.New(&hclog.LoggerOptions{Name: name, Level: hclog.Error, Output: io.Discard})
			logs, snaps := raft.NewInmemStore(), raft.NewInmemSnapshotStore()
			if err := raft.BootstrapCluster(conf, logs, logs, snaps, trans, raft.Configuration{Servers: servers}); err != nil {
				t.Fatal(err)
			}
			fsm := &countFSM{}
			r, err := raft.NewRaft(conf, fsm, logs, logs, snaps, trans)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { r.Shutdown().Error() })
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

	// One shared connection per ordered pair of processes, not per group.
	for _, m := range muxes {
		m.mu.RLock()
		n := len(m.conns)
		m.mu.RUnlock()
		if n > 2*(nodes-1) {
			t.Errorf("mux %s has %d connections for %d groups, want at most %d", m.Addr(), n, groups, 2*(nodes-1))
		}
	}
}
