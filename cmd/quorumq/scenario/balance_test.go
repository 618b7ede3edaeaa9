package scenario

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/quorumq/quorumq/clientlib"
	"github.com/quorumq/quorumq/cmd/quorumq/proctest"
	"github.com/quorumq/quorumq/manager/managerapi"
)

// liveReplica is the part of a broker's GET /replicas entry read here.
type liveReplica struct {
	Topic     string `json:"topic"`
	Partition int    `json:"partition"`
	IsLeader  bool   `json:"is_leader"`
	Members   []struct {
		ID string `json:"id"`
	} `json:"members"`
}

// liveView is what the brokers themselves say: per broker, the replicas it holds and
// the partitions it leads, and for every partition with a leader the members its
// leader counts.
type liveView struct {
	replicas, leaders map[string]int
	members           map[string]int // group → members, as its leader sees them
}

func (c *Cluster) live(t testing.TB, hc *http.Client, nodes []*Node) liveView {
	v := liveView{replicas: map[string]int{}, leaders: map[string]int{}, members: map[string]int{}}
	for _, n := range nodes {
		resp, err := hc.Get(proctest.URL(n.HTTP, "/replicas"))
		if err != nil {
			continue
		}
		var r struct {
			Replicas []liveReplica `json:"replicas"`
		}
		err = json.NewDecoder(resp.Body).Decode(&r)
		resp.Body.Close()
		if err != nil {
			continue
		}
		for _, rep := range r.Replicas {
			v.replicas[n.ID]++
			if rep.IsLeader {
				v.leaders[n.ID]++
				v.members[fmt.Sprintf("%s/%d", rep.Topic, rep.Partition)] = len(rep.Members)
			}
		}
	}
	return v
}

// spread says how far counts are from an even share of total over ids: "" when every
// one is within one of it.
func spread(what string, counts map[string]int, ids []string, total int) string {
	even := float64(total) / float64(len(ids))
	for _, id := range ids {
		if d := float64(counts[id]) - even; d > 1 || d < -1 {
			return fmt.Sprintf("%s %v (even %.1f)", what, counts, even)
		}
	}
	return ""
}

func nodeIDs(nodes []*Node) []string {
	var ids []string
	for _, n := range nodes {
		ids = append(ids, n.ID)
	}
	return ids
}

// produceAll sends n messages round robin over topic's partitions and returns the
// acknowledged ones.
func produceAll(ctx context.Context, t *testing.T, cl *clientlib.Client, topic string, n int) map[string]bool {
	t.Helper()
	pr, err := cl.NewProducer(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	acked := map[string]bool{}
	for i := 0; i < n; i += 50 {
		var recs []clientlib.Record
		for j := i; j < min(i+50, n); j++ {
			recs = append(recs, clientlib.Record{Value: fmt.Sprintf("%s-%05d", topic, j)})
		}
		if _, err := pr.SendBatch(ctx, recs); err != nil {
			t.Fatalf("produce to %s: %v", topic, err)
		}
		for _, r := range recs {
			acked[r.Value] = true
		}
	}
	if err := pr.Close(ctx); err != nil {
		t.Fatal(err)
	}
	return acked
}

// consumeAll reads topic with a new consumer until it has every acknowledged message,
// and fails the test on a missing one.
func consumeAll(ctx context.Context, t *testing.T, cl *clientlib.Client, topic string, acked map[string]bool) {
	t.Helper()
	cs, err := cl.NewConsumer(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	deadline := time.Now().Add(2 * time.Minute)
	for len(got) < len(acked) && time.Now().Before(deadline) {
		msgs, err := cs.Poll(ctx, 500)
		if err != nil {
			t.Logf("poll %s: %v (retrying)", topic, err)
			time.Sleep(200 * time.Millisecond)
			continue
		}
		for _, m := range msgs {
			got[m.Value] = true
		}
		if len(msgs) == 0 {
			time.Sleep(100 * time.Millisecond)
		}
	}
	var missing []string
	for v := range acked {
		if !got[v] {
			missing = append(missing, v)
		}
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		t.Fatalf("topic %s: %d of %d acknowledged messages lost, e.g. %v", topic, len(missing), len(acked), missing[:min(5, len(missing))])
	}
}

// brokersOf is GET /brokers through the SDK, by id.
func brokersOf(ctx context.Context, cl *clientlib.Client) (map[string]managerapi.BrokerInfo, string, error) {
	bs, by, err := cl.Admin().Brokers(ctx)
	out := map[string]managerapi.BrokerInfo{}
	for _, b := range bs {
		out[b.ID] = b
	}
	return out, by, err
}

// TestBalanceAfterRestartingEveryBroker is the case: every broker SIGKILLed for
// 12 s, then restarted. Every broker holds replicas again and leads its share (within
// one of even), and no acknowledged message is lost.
func TestBalanceAfterRestartingEveryBroker(t *testing.T) {
	const topics, partitions, perTopic = 3, 5, 200
	c := Start(t, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cl := c.Client(t)
	acked := map[string]map[string]bool{}
	for i := range topics {
		name := fmt.Sprintf("restart%d", i)
		if err := c.CreateTopic(ctx, cl, name, partitions); err != nil {
			t.Fatal(err)
		}
		acked[name] = produceAll(ctx, t, cl, name, perTopic)
	}
	hc := proctest.HTTPClient(t)
	ids := nodeIDs(c.Brokers)
	total := topics * partitions
	balanced := func() string {
		v := c.live(t, hc, c.Brokers)
		for _, id := range ids {
			if v.replicas[id] == 0 {
				return fmt.Sprintf("%s holds no replica: %v", id, v.replicas)
			}
		}
		if s := spread("replicas", v.replicas, ids, 3*total); s != "" {
			return s
		}
		return spread("leaders", v.leaders, ids, total)
	}
	waitFor(t, 3*time.Minute, "replicas and leaders spread before the restart", balanced)

	for _, b := range c.Brokers {
		b.Kill()
	}
	time.Sleep(12 * time.Second)
	for _, b := range c.Brokers {
		b.Restart(t)
	}
	moves, transfers, failures := c.moveLines()
	took := waitFor(t, 3*time.Minute, "every broker holding replicas, replicas and leaders within one of even for 2 s", stable(balanced))
	v := c.live(t, hc, c.Brokers)
	m2, t2, f2 := c.moveLines()
	t.Logf("all brokers SIGKILLed for 12 s and restarted: balanced %v after the restart: replicas %v, leaders %v; "+
		"since the restart %d replica moves, %d leadership transfers, %d failure lines logged",
		took.Round(100*time.Millisecond), v.replicas, v.leaders, m2-moves, t2-transfers, f2-failures)
	for name, a := range acked {
		consumeAll(ctx, t, cl, name, a)
	}
}

// moveLines counts, over every manager's log, the lines of finished moves and
// transfers and of failures (logged once per group and kind of failure).
func (c *Cluster) moveLines() (moves, transfers, failures int) {
	for _, m := range c.Managers {
		for _, line := range strings.Split(m.Proc().Output(), "\n") {
			switch {
			case strings.Contains(line, "move failed"):
				failures++
			case !strings.Contains(line, "move done") && !strings.Contains(line, "move succeeded"):
			case strings.Contains(line, "job=\"leadership"):
				transfers++
			default:
				moves++
			}
		}
	}
	return moves, transfers, failures
}

// stable is cond holding at three checks a second apart.
func stable(cond func() string) func() string {
	return func() string {
		for i := range 3 {
			if i > 0 {
				time.Sleep(time.Second)
			}
			if s := cond(); s != "" {
				return s
			}
		}
		return ""
	}
}

// waitFor polls cond (its answer says what is still wrong, "" when all is well) until
// it holds, and returns how long that took.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() string) time.Duration {
	t.Helper()
	start := time.Now()
	last := ""
	for {
		if last = cond(); last == "" {
			return time.Since(start)
		}
		if time.Since(start) > timeout {
			t.Fatalf("after %v still waiting for %s: %s", timeout, what, last)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// TestDecommissionAndNewBroker decommissions a broker holding a quarter of the
// replicas while watching every partition's leader: none ever counts fewer members
// than the replication factor, GET /brokers shows the progress, and the broker is
// released. A new broker then receives its share of replicas and leaders. No
// acknowledged message is lost.
//
// QUORUMQ_BALANCE_PARTITIONS sets the partitions (default 100, which gives the
// decommissioned broker 75 replicas, so that the mover's 32 moves in flight run in
// parallel for several rounds; in topics of at most 100): 1600 gives it about 1,200
// (quorumq bench decommission measures that).
func TestDecommissionAndNewBroker(t *testing.T) {
	partitions := 100
	if v := os.Getenv("QUORUMQ_BALANCE_PARTITIONS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("QUORUMQ_BALANCE_PARTITIONS=%q: want a positive number", v)
		}
		partitions = n
	}
	const perTopic, messages = 100, 800
	c := Start(t, Options{Brokers: 4})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	cl := c.Client(t)
	acked := map[string]map[string]bool{}
	for left, i := partitions, 0; left > 0; left, i = left-perTopic, i+1 {
		topic := fmt.Sprintf("decom%d", i)
		if err := c.CreateTopic(ctx, cl, topic, min(left, perTopic)); err != nil {
			t.Fatal(err)
		}
		acked[topic] = produceAll(ctx, t, cl, topic, messages*min(left, perTopic)/partitions)
	}
	hc := proctest.HTTPClient(t)
	gone := c.Brokers[3]
	// The topic may have been placed while not every broker was up: wait until every
	// partition has its 3 replicas and they are spread, so that the decommission starts
	// from a settled cluster.
	waitFor(t, 5*time.Minute, "every partition led, with 3 members, replicas spread", func() string {
		v := c.live(t, hc, c.Brokers)
		if len(v.members) < partitions {
			return fmt.Sprintf("%d of %d partitions led", len(v.members), partitions)
		}
		for g, n := range v.members {
			if n != 3 {
				return fmt.Sprintf("partition %s has %d members", g, n)
			}
		}
		return spread("replicas", v.replicas, nodeIDs(c.Brokers), 3*partitions)
	})
	bs, _, err := brokersOf(ctx, cl)
	if err != nil {
		t.Fatal(err)
	}
	held := bs[gone.ID].Replicas
	moves, transfers, failures := c.moveLines()
	start := time.Now()
	if err := cl.Admin().Decommission(ctx, gone.ID); err != nil {
		t.Fatal(err)
	}
	var seen []string // the progress as GET /brokers showed it, when it changed
	below := map[string]int{}
	waitFor(t, 15*time.Minute, gone.ID+" released", func() string {
		for g, n := range c.live(t, hc, c.Brokers).members {
			if n < 3 {
				below[g] = n
			}
		}
		bs, by, err := brokersOf(ctx, cl)
		if err != nil {
			return err.Error()
		}
		b := bs[gone.ID]
		line := fmt.Sprintf("%s replicas %d, moves %+v (counted by %q)", b.State, b.Replicas, b.Moves, by)
		if len(seen) == 0 || seen[len(seen)-1] != line {
			seen = append(seen, line)
		}
		if b.State != "released" {
			return line
		}
		return ""
	})
	took := time.Since(start)
	m2, t2, f2 := c.moveLines()
	t.Logf("decommission of %s (%d replicas) finished in %v (%d replica moves, %d leadership transfers, %d failure lines logged); progress seen:",
		gone.ID, held, took.Round(100*time.Millisecond), m2-moves, t2-transfers, f2-failures)
	for _, s := range seen {
		t.Logf("  %s", s)
	}
	if len(below) > 0 {
		t.Errorf("partitions whose leader counted fewer than 3 members during the decommission: %v", below)
	}
	if len(seen) < 2 {
		t.Errorf("GET /brokers showed no progress: %v", seen)
	}

	added := c.AddBroker(t)
	alive := append(c.Brokers[:3:3], added)
	ids := nodeIDs(alive)
	took = waitFor(t, 3*time.Minute, "the new broker holding its share", func() string {
		v := c.live(t, hc, alive)
		if s := spread("replicas", v.replicas, ids, 3*partitions); s != "" {
			return s
		}
		return spread("leaders", v.leaders, ids, partitions)
	})
	v := c.live(t, hc, alive)
	t.Logf("new broker %s: replicas and leaders within one of even %v after it started: replicas %v, leaders %v",
		added.ID, took.Round(100*time.Millisecond), v.replicas, v.leaders)
	for topic, a := range acked {
		consumeAll(ctx, t, cl, topic, a)
	}
}
