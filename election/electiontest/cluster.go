// Package electiontest starts Raft groups of real election.Nodes over real TCP on the
// loopback interface, one Mux per node as if each were its own process.
package electiontest

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/quorumq/quorumq/election"
	"github.com/quorumq/quorumq/internal/transport"
)

// Wait bounds every wait of the harness; generous because CI runs on 2 cores with -race.
const Wait = 30 * time.Second

// Cluster is one group of N nodes, each with its own Mux and data directory.
type Cluster struct {
	Group string
	Nodes []*election.Node
	Muxes []*transport.Mux
	FSMs  []raft.FSM

	opts   Options
	mu     sync.Mutex
	dirs   []string
	peers  []election.Peer
	dead   []bool
	newFSM func(id string) raft.FSM
	links  map[transport.Link]transport.LinkFault // network faults (faults.go)
}

// Logger is what harness nodes log to: nothing, unless QUORUMQ_TEST_LOG=1.
func Logger() *slog.Logger {
	if os.Getenv("QUORUMQ_TEST_LOG") == "1" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// NewMux starts a Mux on a free loopback port (or on addr), closed on cleanup.
func NewMux(t testing.TB, addr string) *transport.Mux {
	t.Helper()
	return newMux(t, addr, false)
}

func newMux(t testing.TB, addr string, noPipeline bool) *transport.Mux {
	t.Helper()
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	cfg := transport.Config{BindAddr: addr, Logger: Logger()}
	if noPipeline {
		cfg.MaxRPCsInFlight = 1
	}
	var m *transport.Mux
	var err error
	// A restarted node rebinds its old port, which the kernel may hold for a moment.
	for deadline := time.Now().Add(5 * time.Second); ; {
		if m, err = transport.New(cfg); err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("electiontest: mux on %s: %v", addr, err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// NewCluster starts n nodes of group bootstrapped with explicit Peers and returns once
// one of them leads. newFSM builds each node's state machine from its ID ("n0", "n1"...).
func NewCluster(t testing.TB, n int, group string, newFSM func(id string) raft.FSM) *Cluster {
	t.Helper()
	return NewClusterWith(t, n, group, newFSM, Options{})
}

// Options tunes a Cluster.
type Options struct {
	Timing election.Timing // zero: election.DefaultTiming()
	// NoPipeline turns off AppendEntries pipelining. raft v1.7.3 logs a follower's address
	// without its lock when a pipelined send fails, which the race detector reports once
	// that address changes (RestartMoved).
	NoPipeline bool
}

// NewClusterWith is NewCluster with Options.
func NewClusterWith(t testing.TB, n int, group string, newFSM func(id string) raft.FSM, o Options) *Cluster {
	t.Helper()
	c := &Cluster{Group: group, newFSM: newFSM, opts: o}
	for i := range n {
		c.Muxes = append(c.Muxes, newMux(t, "", o.NoPipeline))
		c.dirs = append(c.dirs, filepath.Join(t.TempDir(), fmt.Sprintf("n%d", i)))
		c.peers = append(c.peers, election.Peer{ID: fmt.Sprintf("n%d", i), Addr: string(c.Muxes[i].Addr())})
	}
	c.Nodes = make([]*election.Node, n)
	c.FSMs = make([]raft.FSM, n)
	c.dead = make([]bool, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = c.open(i)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("electiontest: open node %d: %v", i, err)
		}
	}
	t.Cleanup(c.closeAll)
	c.Leader(t)
	return c
}

func (c *Cluster) open(i int) error {
	ctx, cancel := context.WithTimeout(context.Background(), Wait)
	defer cancel()
	fsm := c.newFSM(c.peers[i].ID)
	node, err := election.Open(ctx, election.Config{
		Group: c.Group, ID: c.peers[i].ID, DataDir: c.dirs[i], Mux: c.Muxes[i], FSM: fsm,
		Timing: c.opts.Timing, Peers: c.peers, Logger: Logger(),
	})
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.Nodes[i], c.FSMs[i], c.dead[i] = node, fsm, false
	c.mu.Unlock()
	return nil
}

func (c *Cluster) closeAll() {
	for i := range c.Nodes {
		c.Kill(i)
	}
}

// Alive reports whether node i runs (it was not killed, or was restarted since).
func (c *Cluster) Alive(i int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.Nodes[i] != nil && !c.dead[i]
}

// Leader waits until a live node leads and every live node agrees on it, and returns it.
func (c *Cluster) Leader(t testing.TB) *election.Node {
	t.Helper()
	deadline := time.Now().Add(Wait)
	for time.Now().Before(deadline) {
		if l := c.agreedLeader(); l != nil {
			return l
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("electiontest: group %q has no agreed leader after %s", c.Group, Wait)
	return nil
}

func (c *Cluster) agreedLeader() *election.Node {
	var leader *election.Node
	var id string
	for i, n := range c.Nodes {
		if !c.Alive(i) {
			continue
		}
		l := n.Leader()
		if l.ID == "" || (id != "" && l.ID != id) {
			return nil
		}
		id = l.ID
		if n.ID() == id && n.IsLeader() {
			leader = n
		}
	}
	return leader
}

// Kill stops node i the hard way: raft stops without leaving the group and its Mux
// closes, dropping every connection, as if the process had been killed.
func (c *Cluster) Kill(i int) {
	c.mu.Lock()
	if c.dead[i] || c.Nodes[i] == nil {
		c.mu.Unlock()
		return
	}
	c.dead[i] = true
	n, m := c.Nodes[i], c.Muxes[i]
	c.mu.Unlock()
	m.Close()
	n.Close()
}

// Restart reopens killed node i on its data directory and old address.
func (c *Cluster) Restart(t testing.TB, i int) *election.Node {
	t.Helper()
	return c.restart(t, i, c.peers[i].Addr)
}

// RestartMoved reopens killed node i on its data directory at a new address, as a
// container that comes back with another IP.
func (c *Cluster) RestartMoved(t testing.TB, i int) *election.Node {
	t.Helper()
	return c.restart(t, i, "")
}

func (c *Cluster) restart(t testing.TB, i int, addr string) *election.Node {
	t.Helper()
	c.Kill(i)
	c.Muxes[i] = newMux(t, addr, c.opts.NoPipeline)
	c.mu.Lock()
	c.peers[i].Addr = string(c.Muxes[i].Addr())
	c.applyFaults() // the new Mux, and the others if the address moved
	c.mu.Unlock()
	if err := c.open(i); err != nil {
		t.Fatalf("electiontest: restart node %d: %v", i, err)
	}
	return c.Nodes[i]
}

// AddNode starts a new node with an empty data directory that joins the running group
// through the current members, and returns its index.
func (c *Cluster) AddNode(t testing.TB) int {
	t.Helper()
	i := len(c.Nodes)
	m := newMux(t, "", c.opts.NoPipeline)
	c.mu.Lock()
	c.Muxes = append(c.Muxes, m)
	c.dirs = append(c.dirs, filepath.Join(t.TempDir(), fmt.Sprintf("n%d", i)))
	members := append([]election.Peer(nil), c.peers...)
	c.peers = append(c.peers, election.Peer{ID: fmt.Sprintf("n%d", i), Addr: string(m.Addr())})
	c.Nodes = append(c.Nodes, nil)
	c.FSMs = append(c.FSMs, nil)
	c.dead = append(c.dead, false)
	c.mu.Unlock()

	ctx, cancel := context.WithTimeout(context.Background(), Wait)
	defer cancel()
	fsm := c.newFSM(c.peers[i].ID)
	node, err := election.Open(ctx, election.Config{
		Group: c.Group, ID: c.peers[i].ID, DataDir: c.dirs[i], Mux: m, FSM: fsm,
		Timing: c.opts.Timing, Peers: members, Logger: Logger(),
	})
	if err != nil {
		t.Fatalf("electiontest: add node %d: %v", i, err)
	}
	c.mu.Lock()
	c.Nodes[i], c.FSMs[i] = node, fsm
	c.mu.Unlock()
	return i
}
