package election_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/quorumq/quorumq/discovery"
	"github.com/quorumq/quorumq/election"
	"github.com/quorumq/quorumq/election/electiontest"
)

func ctxWait(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), electiontest.Wait)
	t.Cleanup(cancel)
	return ctx
}

func follower(c *electiontest.Cluster, leader *election.Node) (int, *election.Node) {
	for i, n := range c.Nodes {
		if c.Alive(i) && n != leader {
			return i, n
		}
	}
	return -1, nil
}

func index(c *electiontest.Cluster, n *election.Node) int {
	return slices.Index(c.Nodes, n)
}

func recorder(c *electiontest.Cluster, i int) *electiontest.Recorder {
	return c.FSMs[i].(*electiontest.Recorder)
}

// eventually polls cond until it holds or the harness's wait runs out.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(electiontest.Wait); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

func apply(t *testing.T, n *election.Node, cmd string) string {
	t.Helper()
	res, err := n.Apply(ctxWait(t), []byte(cmd))
	if err != nil {
		t.Fatalf("Apply(%q) on %s: %v", cmd, n.ID(), err)
	}
	return string(res)
}

// settledApply applies cmd through n, which rec (n's FSM) records, and returns its
// result. An outcome raft could not tell (a leader lost its lease while committing, as a
// loaded machine makes it) is settled as a client would: once n has applied all the
// group committed, cmd took effect if rec holds it, and its result is its position;
// otherwise it is sent again.
func settledApply(t *testing.T, n *election.Node, rec *electiontest.Recorder, cmd string) (string, error) {
	t.Helper()
	for {
		res, err := n.Apply(ctxWait(t), []byte(cmd))
		if !errors.Is(err, election.ErrUnknownOutcome) {
			return string(res), err
		}
		t.Logf("Apply(%q) on %s: %v; settling it", cmd, n.ID(), err)
		if err := n.ReadBarrier(ctxWait(t)); err != nil {
			t.Fatalf("ReadBarrier on %s: %v", n.ID(), err)
		}
		if i := slices.Index(rec.Entries(), cmd); i >= 0 {
			return strconv.Itoa(i + 1), nil
		}
	}
}

func TestApplyOnLeaderAndFollower(t *testing.T) {
	c := electiontest.NewCluster(t, 3, "g", electiontest.NewRecorder)
	leader := c.Leader(t)
	fi, f := follower(c, leader)

	if got, err := settledApply(t, leader, recorder(c, index(c, leader)), "a"); err != nil || got != "1" {
		t.Fatalf("leader Apply result = %q, %v; want 1", got, err)
	}
	if got, err := settledApply(t, f, recorder(c, fi), "b"); err != nil || got != "2" {
		t.Fatalf("follower Apply result = %q, %v; want 2", got, err)
	}
	for _, n := range []*election.Node{leader, f} {
		_, err := settledApply(t, n, recorder(c, index(c, n)), "reject")
		if !errors.Is(err, electiontest.ErrRejected) {
			t.Fatalf("FSM error through %s = %v, want it to match %v", n.ID(), err, electiontest.ErrRejected)
		}
	}
	for i := range c.Nodes {
		if err := c.Nodes[i].ReadBarrier(ctxWait(t)); err != nil {
			t.Fatalf("ReadBarrier on %d: %v", i, err)
		}
		if got := recorder(c, i).Entries(); !slices.Equal(got, []string{"a", "b"}) {
			t.Fatalf("node %d entries after ReadBarrier = %v, want [a b]", i, got)
		}
	}
}

func TestBootstrapExpectThroughDiscovery(t *testing.T) {
	static := discovery.NewStatic()
	const service = "quorumq-test"
	start := func(id string) (*election.Node, *electiontest.Recorder) {
		mux := electiontest.NewMux(t, "")
		static.Register(context.Background(), discovery.Registration{Instance: discovery.Instance{
			Service: service, ID: id, Addr: "unused", Meta: map[string]string{discovery.MetaRaftAddr: string(mux.Addr())},
		}})
		fsm := &electiontest.Recorder{}
		n, err := election.Open(ctxWait(t), election.Config{
			Group: "g", ID: id, DataDir: filepath.Join(t.TempDir(), id), Mux: mux, FSM: fsm,
			BootstrapExpect: 3, Discover: election.DiscoverService(static, service), Logger: electiontest.Logger(),
		})
		if err != nil {
			t.Errorf("Open %s: %v", id, err)
			return nil, nil
		}
		t.Cleanup(func() { n.Close() })
		return n, fsm
	}
	nodes := make([]*election.Node, 3)
	var wg sync.WaitGroup
	for i := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Staggered, so that some members see fewer peers than expected at first.
			time.Sleep(time.Duration(i) * 300 * time.Millisecond)
			nodes[i], _ = start(fmt.Sprintf("d%d", i))
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	if _, err := nodes[0].WaitLeader(ctxWait(t)); err != nil {
		t.Fatal(err)
	}
	apply(t, nodes[2], "x")

	// A member started once the group runs joins it instead of bootstrapping anew.
	late, fsm := start("d3")
	if late == nil {
		t.FailNow()
	}
	eventually(t, "the late member to apply the log", func() bool {
		return late.ReadBarrier(ctxWait(t)) == nil && fsm.Has("x")
	})
	members, err := nodes[0].Members(ctxWait(t))
	if err != nil || len(members) != 4 {
		t.Fatalf("members = %v, %v; want 4", members, err)
	}
}

func TestKillLeader(t *testing.T) {
	c := electiontest.NewCluster(t, 3, "g", electiontest.NewRecorder)
	old := c.Leader(t)
	changes := make([]<-chan bool, 3)
	for i, n := range c.Nodes {
		changes[i] = n.LeaderChanges()
		if first := <-changes[i]; first != (n == old) {
			t.Fatalf("node %d first leadership signal = %v", i, first)
		}
	}
	apply(t, old, "before")
	c.Kill(index(c, old))

	leader := c.Leader(t)
	if leader == old {
		t.Fatal("killed node still counted as leader")
	}
	select {
	case v := <-changes[index(c, leader)]:
		if !v {
			t.Fatal("new leader's first change signal is false")
		}
	case <-time.After(electiontest.Wait):
		t.Fatal("new leader got no leadership change signal")
	}
	fi, f := follower(c, leader)
	apply(t, f, "through-follower")

	// A write completed on one member is visible on the other after ReadBarrier.
	apply(t, leader, "on-leader")
	if err := f.ReadBarrier(ctxWait(t)); err != nil {
		t.Fatal(err)
	}
	if got := recorder(c, fi).Entries(); !slices.Equal(got, []string{"before", "through-follower", "on-leader"}) {
		t.Fatalf("follower entries after ReadBarrier = %v", got)
	}
}

func TestOpenRejectsIncompleteConfig(t *testing.T) {
	mux := electiontest.NewMux(t, "")
	valid := election.Config{Group: "g", ID: "a", DataDir: t.TempDir(), Mux: mux, FSM: &electiontest.Recorder{}}
	for _, tc := range []struct {
		name string
		edit func(*election.Config)
	}{
		{"no group", func(c *election.Config) { c.Group = "" }},
		{"no id", func(c *election.Config) { c.ID = "" }},
		{"no mux", func(c *election.Config) { c.Mux = nil }},
		{"no fsm", func(c *election.Config) { c.FSM = nil }},
		{"no data dir", func(c *election.Config) { c.DataDir = "" }},
		{"expect without discover", func(c *election.Config) { c.BootstrapExpect = 3 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := valid
			tc.edit(&cfg)
			if n, err := election.Open(ctxWait(t), cfg); err == nil {
				n.Close()
				t.Fatal("Open succeeded")
			}
		})
	}
	// The valid config is a group of one, which elects itself.
	n, err := election.Open(ctxWait(t), valid)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	if _, err := n.WaitLeader(ctxWait(t)); err != nil {
		t.Fatal(err)
	}
	if res, err := n.Apply(ctxWait(t), []byte("solo")); err != nil || string(res) != "1" {
		t.Fatalf("Apply on a group of one = %q, %v", res, err)
	}
}

// TestFailoverTime reports (does not assert) how long a group takes to elect a new
// leader after its leader is killed, with DefaultTiming. IdleTiming's groups are failed
// over by their process's own detector (broker/nudge.go; `quorumq bench partitions`
// measures it): raft's own pace there, up to tens of seconds, is too slow for a test.
func TestFailoverTime(t *testing.T) {
	for _, tc := range []struct {
		name   string
		timing election.Timing
	}{{"default", election.DefaultTiming()}} {
		t.Run(tc.name, func(t *testing.T) {
			c := electiontest.NewClusterWith(t, 3, "g", electiontest.NewRecorder, electiontest.Options{Timing: tc.timing})
			var took []time.Duration
			for range 3 {
				old := c.Leader(t)
				i := index(c, old)
				start := time.Now()
				c.Kill(i)
				c.Leader(t)
				took = append(took, time.Since(start).Round(10*time.Millisecond))
				c.Restart(t, i)
			}
			t.Logf("%s timing: new leader %v after the leader was killed", tc.name, took)
		})
	}
}

func TestRestartAndLateJoin(t *testing.T) {
	// Keep almost no log behind snapshots, so that the late member needs one.
	timing := election.DefaultTiming()
	timing.TrailingLogs = 1
	c := electiontest.NewClusterWith(t, 3, "g", electiontest.NewRecorder, electiontest.Options{Timing: timing})
	leader := c.Leader(t)
	i, f := follower(c, leader)
	apply(t, leader, "1")
	apply(t, f, "2")
	if err := f.ReadBarrier(ctxWait(t)); err != nil {
		t.Fatal(err)
	}
	if err := f.Raft().Snapshot().Error(); err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	apply(t, leader, "3")
	c.Kill(i)
	apply(t, leader, "4")

	f = c.Restart(t, i)
	// The log tail after the snapshot is applied once the leader tells the commit index.
	if err := f.ReadBarrier(ctxWait(t)); err != nil {
		t.Fatal(err)
	}
	if got := recorder(c, i).Entries(); !slices.Equal(got, []string{"1", "2", "3", "4"}) {
		t.Fatalf("restarted node entries = %v", got)
	}
	apply(t, f, "5")
	if err := c.Leader(t).Raft().Snapshot().Error(); err != nil {
		t.Fatalf("leader snapshot: %v", err)
	}

	j := c.AddNode(t)
	if err := c.Nodes[j].ReadBarrier(ctxWait(t)); err != nil {
		t.Fatal(err)
	}
	if got := recorder(c, j).Entries(); !slices.Equal(got, []string{"1", "2", "3", "4", "5"}) {
		t.Fatalf("late node entries = %v", got)
	}
	members, err := c.Nodes[j].Members(ctxWait(t))
	if err != nil || len(members) != 4 {
		t.Fatalf("members = %v, %v; want 4", members, err)
	}
}

func TestRestartAtNewAddress(t *testing.T) {
	c := electiontest.NewClusterWith(t, 3, "g", electiontest.NewRecorder, electiontest.Options{NoPipeline: true})
	leader := c.Leader(t)
	i, _ := follower(c, leader)
	apply(t, leader, "1")
	c.Kill(i)
	apply(t, leader, "2")
	n := c.RestartMoved(t, i)
	if err := n.ReadBarrier(ctxWait(t)); err != nil {
		t.Fatal(err)
	}
	if got := recorder(c, i).Entries(); !slices.Equal(got, []string{"1", "2"}) {
		t.Fatalf("moved node entries = %v", got)
	}
	eventually(t, "the leader to record the new address", func() bool {
		members, _ := c.Leader(t).Members(ctxWait(t))
		return slices.Contains(members, election.Peer{ID: n.ID(), Addr: string(c.Muxes[i].Addr())})
	})
}

func TestSecondBootstrapRefused(t *testing.T) {
	c := electiontest.NewCluster(t, 3, "g", electiontest.NewRecorder)
	leader := c.Leader(t)
	apply(t, leader, "a")
	before, _ := leader.Members(ctxWait(t))
	last := leader.Raft().LastIndex()

	for _, n := range c.Nodes {
		err := n.Bootstrap([]election.Peer{{ID: "other", Addr: "127.0.0.1:1"}})
		if !errors.Is(err, election.ErrAlreadyBootstrapped) {
			t.Fatalf("second bootstrap on %s = %v, want ErrAlreadyBootstrapped", n.ID(), err)
		}
	}
	after, _ := leader.Members(ctxWait(t))
	if !slices.Equal(before, after) || leader.Raft().LastIndex() != last {
		t.Fatalf("state changed: members %v → %v, last index %d → %d", before, after, last, leader.Raft().LastIndex())
	}

	// Reopening on the same data with other Peers starts from the stored state.
	i, _ := follower(c, leader)
	n := c.Restart(t, i)
	members, _ := n.Members(ctxWait(t))
	if !slices.Equal(members, before) {
		t.Fatalf("restarted members = %v, want %v", members, before)
	}
}

func TestNoQuorumFailsWithinDeadline(t *testing.T) {
	c := electiontest.NewCluster(t, 3, "g", electiontest.NewRecorder)
	leader := c.Leader(t)
	apply(t, leader, "a")
	for _, kill := range []bool{true, false} { // the leader survives, then a follower does
		c := c
		if !kill {
			c = electiontest.NewCluster(t, 3, "g2", electiontest.NewRecorder)
			leader = c.Leader(t)
		}
		survivor := leader
		if !kill {
			_, survivor = follower(c, leader)
		}
		for i, n := range c.Nodes {
			if n != survivor {
				c.Kill(i)
			}
		}
		const deadline = 3 * time.Second
		ctx, cancel := context.WithTimeout(context.Background(), deadline)
		start := time.Now()
		_, err := survivor.Apply(ctx, []byte("lost"))
		cancel()
		if !errors.Is(err, election.ErrNoLeader) {
			t.Fatalf("Apply without quorum = %v, want ErrNoLeader", err)
		}
		if took := time.Since(start); took > deadline+5*time.Second {
			t.Fatalf("Apply without quorum took %s with a %s deadline", took, deadline)
		}
		t.Logf("no quorum (survivor was leader: %v): %v", kill, err)
		ctx, cancel = context.WithTimeout(context.Background(), time.Second)
		if err := survivor.ReadBarrier(ctx); !errors.Is(err, election.ErrNoLeader) {
			t.Fatalf("ReadBarrier without quorum = %v, want ErrNoLeader", err)
		}
		cancel()
	}
}

func TestMembershipIdempotent(t *testing.T) {
	c := electiontest.NewCluster(t, 3, "g", electiontest.NewRecorder)
	leader := c.Leader(t)
	_, f := follower(c, leader)
	mux := electiontest.NewMux(t, "")
	extra := election.Peer{ID: "extra", Addr: string(mux.Addr())}
	for range 2 {
		if err := f.AddVoter(ctxWait(t), extra); err != nil {
			t.Fatalf("AddVoter: %v", err)
		}
	}
	members, _ := leader.Members(ctxWait(t))
	if len(members) != 4 {
		t.Fatalf("members after AddVoter = %v", members)
	}
	for range 2 {
		if err := f.RemoveServer(ctxWait(t), "extra"); err != nil {
			t.Fatalf("RemoveServer: %v", err)
		}
	}
	members, _ = leader.Members(ctxWait(t))
	if len(members) != 3 {
		t.Fatalf("members after RemoveServer = %v", members)
	}
}

func TestManyGroupsShareOneMux(t *testing.T) {
	const groups = 50
	// The timing of a process hosting many groups (brokers' partitions): with
	// DefaultTiming's 250 ms lease, 150 members on a loaded 2-core machine under -race
	// kept deposing their leaders, and a group could go 30 s without one. Heartbeats
	// less stretched than IdleTiming's: without a broker to hasten them, its groups
	// would take up to tens of seconds to elect their first leaders.
	timing := election.IdleTiming()
	timing.HeartbeatTimeout, timing.ElectionTimeout, timing.LeaderLeaseTimeout = 3*time.Second, 3*time.Second, time.Second
	all, recs := startGroups(t, 3, groups, timing, false)
	leaders := map[string]int{}
	for g := range groups {
		var leader election.Peer
		eventually(t, fmt.Sprintf("a leader in group %d", g), func() bool {
			leader = all[0][g].Leader()
			return leader.ID != ""
		})
		leaders[leader.ID]++
	}
	t.Logf("leaders per node over %d groups: %v", groups, leaders)
	res, err := settledApply(t, all[1][7], recs[1][7], "x")
	if err != nil || res != "1" {
		t.Fatalf("Apply in group 7 = %q, %v", res, err)
	}
}
