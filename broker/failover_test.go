package broker_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/quorumq/quorumq/broker/brokerapi"
	"github.com/quorumq/quorumq/cmd/quorumq/proctest"
	"github.com/quorumq/quorumq/internal/brokerclient"
)

// cluster is three real broker processes.
type cluster struct {
	peers []brokerapi.Peer
	args  [][]string
	env   [][]string // added to each process's environment, if set
	procs []*proctest.Proc
	tls   *tls.Config // a cluster member's, for the brokers' HTTP API
}

func startCluster(t *testing.T, n int) *cluster {
	c := newCluster(t, n)
	for i := range n {
		c.start(t, i)
	}
	return c
}

// newCluster describes n brokers without starting them.
func newCluster(t *testing.T, n int) *cluster {
	c := &cluster{tls: proctest.ClientTLS(t)}
	dir := t.TempDir()
	for i := range n {
		id := fmt.Sprintf("b%d", i+1)
		p := brokerapi.Peer{ID: id, RaftAddr: proctest.FreeAddr(t), HTTPAddr: proctest.FreeAddr(t)}
		c.peers = append(c.peers, p)
		c.args = append(c.args, []string{"broker", "--id", id, "--data-dir", filepath.Join(dir, id),
			"--raft", p.RaftAddr, "--http", p.HTTPAddr})
		c.procs = append(c.procs, nil)
	}
	return c
}

func (c *cluster) start(t *testing.T, i int) {
	var env []string
	if i < len(c.env) {
		env = c.env[i]
	}
	c.procs[i] = proctest.StartOpts(t, proctest.Opts{Name: c.peers[i].ID, Args: c.args[i], Env: env})
	c.procs[i].WaitOutput(t, "listening", 30*time.Second)
}

func (c *cluster) client() *brokerclient.Client {
	var addrs []string
	for _, p := range c.peers {
		addrs = append(addrs, p.HTTPAddr)
	}
	cl := brokerclient.New(addrs...)
	cl.Secure(c.tls, "")
	return cl
}

func (c *cluster) index(id string) int {
	for i, p := range c.peers {
		if p.ID == id {
			return i
		}
	}
	return -1
}

// waitLeader waits until some broker reports a leader for the partition.
func waitLeader(t *testing.T, cl *brokerclient.Client, topic string, part int) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for ctx.Err() == nil {
		for _, b := range cl.Brokers {
			if st, err := cl.Status(ctx, b, topic, part); err == nil && st.IsLeader {
				return st.Leader.ID
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("no leader for %s/%d", topic, part)
	return ""
}

type ack struct {
	producer string
	seq      uint64
	offset   uint64
	msgs     []string
}

// TestLeaderKilledWhileProducing: 3 brokers, one partition with RF 3, four producers
// writing batches. The leader is SIGKILLed mid-stream. Every acknowledged batch must be
// in the partition at its acknowledged offsets, in order, exactly once; writes resume
// under a new leader; the killed broker restarts and catches up.
func TestLeaderKilledWhileProducing(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	c := startCluster(t, 3)
	cl := c.client()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := cl.CreatePartition(ctx, "orders", 0, c.peers); err != nil {
		t.Fatal(err)
	}
	leader := waitLeader(t, cl, "orders", 0)

	var (
		mu     sync.Mutex
		acks   []ack
		killed = make(chan struct{})
		after  = map[string]int{} // acks per producer after the kill
		// The longest any producer waited between two acks: the failover's length as
		// a client sees it (logged, never asserted).
		lastAck = map[string]time.Time{}
		longest time.Duration
		wg      sync.WaitGroup
		stop    = make(chan struct{})
	)
	for p := range 4 {
		producer := fmt.Sprintf("p%d", p)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for seq := uint64(1); ; seq++ {
				select {
				case <-stop:
					return
				default:
				}
				var msgs []string
				for i := range 5 {
					msgs = append(msgs, fmt.Sprintf("%s-%d-%d", producer, seq, i))
				}
				r, err := cl.Produce(ctx, "orders", 0, producer, seq, msgs)
				if err != nil {
					t.Errorf("%s seq %d: %v", producer, seq, err)
					return
				}
				mu.Lock()
				acks = append(acks, ack{producer, seq, r.Offset, msgs})
				if prev, ok := lastAck[producer]; ok {
					longest = max(longest, time.Since(prev))
				}
				lastAck[producer] = time.Now()
				select {
				case <-killed:
					after[producer]++
				default:
				}
				mu.Unlock()
			}
		}()
	}
	waitFor(t, "200 acknowledged batches", func() bool { mu.Lock(); defer mu.Unlock(); return len(acks) >= 200 })
	li := c.index(leader)
	c.procs[li].Kill()
	mu.Lock()
	close(killed)
	n := len(acks)
	mu.Unlock()
	t.Logf("killed leader %s after %d acks", leader, n)
	waitFor(t, "every producer acknowledged again after the kill", func() bool {
		mu.Lock()
		defer mu.Unlock()
		for p := range 4 {
			if after[fmt.Sprintf("p%d", p)] < 50 {
				return false
			}
		}
		return true
	})
	close(stop)
	wg.Wait()
	if t.Failed() {
		return
	}
	t.Logf("the longest a producer waited between two acknowledgements: %v", longest.Round(time.Millisecond))
	newLeader := waitLeader(t, cl, "orders", 0)
	if newLeader == leader {
		t.Fatalf("leader is still %s after it was killed", leader)
	}

	// The killed broker comes back and catches up with the leader.
	c.start(t, li)
	want, err := cl.Status(ctx, c.peers[c.index(newLeader)].HTTPAddr, "orders", 0)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the restarted broker caught up", func() bool {
		st, err := cl.Status(ctx, c.peers[li].HTTPAddr, "orders", 0)
		return err == nil && st.Next >= want.Next
	})

	// Read everything back through a consumer.
	if _, err := cl.Register(ctx, "orders", 0, "checker"); err != nil {
		t.Fatal(err)
	}
	var all []string
	for {
		r, err := cl.Consume(ctx, "orders", 0, "checker", uint64(len(all)), 1000)
		if err != nil {
			t.Fatal(err)
		}
		if len(r.Messages) == 0 {
			break
		}
		all = append(all, r.Messages...)
	}
	checkLog(t, all, acks)
}

func checkLog(t *testing.T, all []string, acks []ack) {
	t.Helper()
	seen := map[string]int{}
	for off, m := range all {
		if prev, dup := seen[m]; dup {
			t.Fatalf("message %s stored twice (offsets %d and %d)", m, prev, off)
		}
		seen[m] = off
	}
	for _, a := range acks {
		for i, m := range a.msgs {
			off := a.offset + uint64(i)
			if off >= uint64(len(all)) || all[off] != m {
				t.Fatalf("acknowledged %s at offset %d, log has %q", m, off, at(all, off))
			}
		}
	}
	// Per producer, batches appear in sequence order.
	last := map[string]int{}
	for _, m := range all {
		parts := strings.Split(m, "-")
		var seq int
		fmt.Sscan(parts[1], &seq)
		if seq < last[parts[0]] {
			t.Fatalf("%s seq %d after seq %d", parts[0], seq, last[parts[0]])
		}
		last[parts[0]] = seq
	}
	t.Logf("%d messages, %d acknowledged batches, all present once and in order", len(all), len(acks))
}

func at(all []string, off uint64) string {
	if off < uint64(len(all)) {
		return all[off]
	}
	return "<end>"
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for: %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
