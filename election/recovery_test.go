package election_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	dto "github.com/prometheus/client_model/go"

	"github.com/quorumq/quorumq/election"
	"github.com/quorumq/quorumq/election/electiontest"
)

// A leader that finds damage while running hands leadership over, sits out until it has
// caught up, and then votes and serves again; the group keeps working throughout.
func TestReportDamageOnLeader(t *testing.T) {
	c := electiontest.NewCluster(t, 3, "g", electiontest.NewRecorder)
	old := c.Leader(t)
	apply(t, old, "a")
	old.ReportDamage(election.FaultRaftLogChecksum, errors.New("test damage"))
	if rec, why := old.Recovering(); !rec || !strings.Contains(why, "test damage") {
		t.Fatalf("Recovering() = %v, %q right after ReportDamage", rec, why)
	}
	// It cannot leave recovery while it leads (catchUpLocal refuses a damaged leader), so
	// catching up means it handed over; it may lead again later, healthy.
	eventually(t, "the damaged leader to step down and catch up", func() bool {
		rec, _ := old.Recovering()
		return !rec
	})
	apply(t, old, "b")
	if err := old.ReadBarrier(ctxWait(t)); err != nil {
		t.Fatal(err)
	}
}

// history writes commands through a node and remembers them, to check at the end that
// every node holds exactly what was acknowledged.
type history struct {
	t    *testing.T
	want []string
}

func (h *history) write(n *election.Node, prefix string, count int) {
	for i := range count {
		cmd := fmt.Sprintf("%s%d", prefix, i)
		apply(h.t, n, cmd)
		h.want = append(h.want, cmd)
	}
}

// marker is in the one entry writeMarked makes for a test to damage (FlipBits).
var marker = []byte("flip-me-0123456789-")

// writeMarked writes n commands, the marked one, and n more through node li, and waits
// until every node holds them.
func (h *history) writeMarked(c *electiontest.Cluster, li, n int) {
	h.write(c.Nodes[li], "a", n)
	h.write(c.Nodes[li], string(marker), 1)
	h.write(c.Nodes[li], "b", n)
	h.holdsAll(c)
}

// holdsAll waits until every live node has applied exactly the acknowledged commands.
func (h *history) holdsAll(c *electiontest.Cluster) {
	h.t.Helper()
	for i := range c.Nodes {
		if !c.Alive(i) {
			continue
		}
		deadline := time.Now().Add(electiontest.Wait)
		for !slices.Equal(recorder(c, i).Entries(), h.want) {
			if time.Now().After(deadline) {
				h.t.Fatalf("node %d holds %v; acknowledged: %v", i, recorder(c, i).Entries(), h.want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// threeNodes starts a group of three and returns it with the indexes of its leader and
// of the two followers, and an empty history.
func threeNodes(t *testing.T) (c *electiontest.Cluster, li, vi, wi int, h *history) {
	c = electiontest.NewCluster(t, 3, "g", electiontest.NewRecorder)
	l := c.Leader(t)
	vi, wi = followersOf(c, l)
	return c, index(c, l), vi, wi, &history{t: t}
}

func followersOf(c *electiontest.Cluster, leader *election.Node) (int, int) {
	var o []int
	for i, n := range c.Nodes {
		if n != leader {
			o = append(o, i)
		}
	}
	return o[0], o[1]
}

// neverLeads checks for a while that none of nodes becomes leader.
func neverLeads(t *testing.T, why string, nodes ...*election.Node) {
	t.Helper()
	for end := time.Now().Add(3 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		for _, n := range nodes {
			if n.IsLeader() {
				t.Fatalf("%s became leader: %s", n.ID(), why)
			}
		}
	}
}

// countedOnce checks that one fault of kind was counted since the counter read before.
func countedOnce(t *testing.T, kind string, before float64) {
	t.Helper()
	if got := faults(kind); got != before+1 {
		t.Fatalf("%s faults counted: %v, want %v", kind, got, before+1)
	}
}

func recoveringBecause(t *testing.T, n *election.Node, want string) {
	t.Helper()
	eventually(t, fmt.Sprintf("%s to be recovering with %q", n.ID(), want), func() bool {
		rec, why := n.Recovering()
		return rec && strings.Contains(why, want)
	})
}

func faults(kind string) float64 {
	var m dto.Metric
	if err := election.StorageFaults.WithLabelValues(kind).Write(&m); err != nil {
		panic(err)
	}
	return m.GetCounter().GetValue()
}

// The first row: follower W misses entries that the leader L and V commit; V's
// log then loses its newest entries (which it had acknowledged) and L dies. Plain Raft
// elects V (or W) and loses the entries; V must sit out and W cannot win alone, until L
// is back. Then everything acknowledged is on every node and V votes again.
func TestShortenedLogNeverElected(t *testing.T) {
	c, li, vi, wi, h := threeNodes(t)
	h.write(c.Nodes[li], "a", 5)
	h.holdsAll(c)
	c.Kill(wi)
	h.write(c.Nodes[li], "b", 20)
	c.Kill(vi)
	electiontest.CutLog(t, c.Dir(vi), 10)
	c.Kill(li)
	before := faults(election.FaultRaftLogShort)
	v, w := c.Restart(t, vi), c.Restart(t, wi)
	recoveringBecause(t, v, "had acknowledged up to index")
	countedOnce(t, election.FaultRaftLogShort, before)
	neverLeads(t, "W lacks committed entries and V lost some", v, w)
	recoveringBecause(t, v, "waiting for a healthy leader")

	c.Restart(t, li)
	h.write(c.Leader(t), "c", 1)
	h.holdsAll(c)
	eventually(t, "V to catch up", func() bool { rec, _ := v.Recovering(); return !rec })

	// V votes again: without L, V and W elect one of them.
	c.Kill(index(c, c.Leader(t)))
	h.write(c.Leader(t), "d", 1)
	h.holdsAll(c)
}

// A flipped bit in a stopped follower's bolt log is found when it opens: the log is cut
// there and the follower recovers the rest from the leader.
func TestFlippedEntryFoundAtOpen(t *testing.T) {
	c, li, vi, _, h := threeNodes(t)
	h.writeMarked(c, li, 10)
	c.Kill(vi)
	electiontest.FlipBits(t, c.Dir(vi), marker)
	before := faults(election.FaultRaftLogChecksum)
	v := c.Restart(t, vi)
	countedOnce(t, election.FaultRaftLogChecksum, before)
	h.write(c.Nodes[li], "c", 1)
	h.holdsAll(c)
	eventually(t, "V to catch up", func() bool { rec, _ := v.Recovering(); return !rec })
}

// A flipped bit in the running leader's log is found when the leader reads the entry to
// send it to a follower that was away: the damaged entry is never sent; it was applied,
// so the leader snapshots, drops its log up to it, and the follower gets the snapshot.
func TestFlippedEntryFoundByRunningLeader(t *testing.T) {
	c, li, _, wi, h := threeNodes(t)
	h.write(c.Nodes[li], "a", 3)
	h.holdsAll(c)
	c.Kill(wi)
	h.write(c.Nodes[li], "flip-me-0123456789-", 1)
	h.write(c.Nodes[li], "b", 10)
	before := faults(election.FaultRaftLogChecksum)
	electiontest.FlipBits(t, c.Dir(li), []byte("flip-me-0123456789-"))
	c.Restart(t, wi)
	h.holdsAll(c)
	countedOnce(t, election.FaultRaftLogChecksum, before)
	h.write(c.Leader(t), "c", 1)
	h.holdsAll(c)
}

// With two of three logs short of what they acknowledged there is no healthy majority:
// the group elects nobody, and the damaged members say why.
func TestNoHealthyMajorityStaysUnavailable(t *testing.T) {
	c, li, vi, wi, h := threeNodes(t)
	h.write(c.Nodes[li], "a", 20)
	h.holdsAll(c)
	for i := range c.Nodes {
		c.Kill(i)
	}
	electiontest.CutLog(t, c.Dir(vi), 5)
	electiontest.CutLog(t, c.Dir(wi), 5)
	for _, i := range []int{li, vi, wi} {
		c.Restart(t, i)
	}
	neverLeads(t, "two of three members are damaged", c.Nodes...)
	for _, i := range []int{vi, wi} {
		recoveringBecause(t, c.Nodes[i], "waiting for a healthy leader")
	}
	if rec, why := c.Nodes[li].Recovering(); rec {
		t.Fatalf("the healthy member says it is recovering: %s", why)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if _, err := c.Nodes[li].Apply(ctx, []byte("x")); !errors.Is(err, election.ErrNoLeader) {
		t.Fatalf("Apply without a healthy majority: %v, want ErrNoLeader", err)
	}
}

// A group of one has nobody to recover from: a damaged member stays recovering, serves
// no writes or reads, and says why.
func TestDamagedSoleMemberStaysUnavailable(t *testing.T) {
	c := electiontest.NewCluster(t, 1, "g", electiontest.NewRecorder)
	n := c.Leader(t)
	apply(t, n, "a")
	n.ReportDamage(election.FaultRaftLogChecksum, errors.New("test damage"))
	recoveringBecause(t, n, "cannot hand leadership to a healthy member")
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if _, err := n.Apply(ctx, []byte("b")); err == nil {
		t.Fatal("a damaged sole member applied a write")
	}
	if err := n.ReadBarrier(ctx); !errors.Is(err, election.ErrRecovering) {
		t.Fatalf("ReadBarrier on a damaged sole member: %v, want ErrRecovering", err)
	}
}

// A committed entry found damaged when a follower comes to apply it, not at open, made
// raft panic (its apply loop has no answer to a read error). Now the follower restarts
// raft in-process with its log cut before the entry, sits out until it has caught up,
// and holds exactly what was acknowledged.
func TestDamagedEntryFoundBeforeApply(t *testing.T) {
	c, li, vi, wi, h := threeNodes(t)
	h.writeMarked(c, li, 3)
	// V restarts cut off from the others: it checks its log at open, then applies
	// nothing until a leader tells it what is committed.
	c.Kill(vi)
	c.Partition([]int{li, wi})
	v := c.Restart(t, vi)
	electiontest.FlipBits(t, c.Dir(vi), marker)
	before := faults(election.FaultRaftLogChecksum)
	c.Heal()
	recoveringBecause(t, v, "committed and not yet applied, cannot be read")
	countedOnce(t, election.FaultRaftLogChecksum, before)
	h.write(c.Nodes[li], "c", 1)
	h.holdsAll(c)
	eventually(t, "V to catch up", func() bool { rec, _ := v.Recovering(); return !rec })
	h.write(c.Leader(t), "d", 1)
	h.holdsAll(c)
}

// Stable stores given to a node (the broker's raft.db) are sealed too: a term that no
// longer checks out at the next open puts the member into recovery instead of being
// believed; values written before the seal are sealed at open.
func TestGivenStableStoreSealed(t *testing.T) {
	logs, stable, snaps := raft.NewInmemStore(), raft.NewInmemStore(), raft.NewInmemSnapshotStore()
	// Written before seals existed (Set: InmemStore keeps SetUint64's values apart).
	stable.Set([]byte("CurrentTerm"), []byte{0, 0, 0, 0, 0, 0, 0, 3})
	open := func() *election.Node {
		n, err := election.Open(ctxWait(t), election.Config{Group: "g", ID: "n0", Mux: electiontest.NewMux(t, ""),
			FSM: &electiontest.Recorder{}, LogStore: logs, StableStore: stable, SnapshotStore: snaps, Logger: electiontest.Logger()})
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	n := open()
	if term := n.Raft().CurrentTerm(); term < 3 {
		t.Fatalf("term %d after open, the unsealed 3 was not read", term)
	}
	n.Close()
	if rec, why := n.Recovering(); rec {
		t.Fatalf("recovering on sound stores: %s", why)
	}
	v, err := stable.Get([]byte("CurrentTerm"))
	if err != nil || len(v) != 16 {
		t.Fatalf("CurrentTerm not sealed: %x %v", v, err)
	}
	v[7] ^= 1
	stable.Set([]byte("CurrentTerm"), v)
	before := faults(election.FaultStableChecksum)
	n = open()
	defer n.Close()
	recoveringBecause(t, n, "stable store value")
	if faults(election.FaultStableChecksum) <= before { // counted at each read of it
		t.Fatal("the damaged term was not counted")
	}
}
