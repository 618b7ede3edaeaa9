package broker_test

import (
	"bufio"
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/quorumq/quorumq/internal/brokerclient"
)

// raftTerms scrapes every broker's /metrics: the highest term each group has,
// and whether every broker reports that same term for it.
func (c *cluster) raftTerms(t *testing.T) (map[string]uint64, bool) {
	t.Helper()
	terms := map[string]uint64{}
	seen := map[string][]uint64{}
	// The brokers serve TLS; a cluster member's certificate reads /metrics.
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: c.tls}, Timeout: 10 * time.Second}
	for _, p := range c.peers {
		resp, err := hc.Get("https://" + p.HTTPAddr + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			rest, ok := strings.CutPrefix(sc.Text(), `quorumq_broker_raft_term{group="`)
			if !ok {
				continue
			}
			group, value, _ := strings.Cut(rest, `"} `)
			v, err := strconv.ParseFloat(value, 64)
			if err != nil {
				t.Fatalf("metric line %q: %v", sc.Text(), err)
			}
			terms[group] = max(terms[group], uint64(v))
			seen[group] = append(seen[group], uint64(v))
		}
		resp.Body.Close()
	}
	agree := true
	for g, vs := range seen {
		for _, v := range vs {
			agree = agree && v == terms[g] && len(vs) == len(c.peers)
		}
	}
	return terms, agree
}

// TestBigBatchKeepsOtherLeaders: 32 and 63 MiB batches (under the old 64 MiB
// body limit) are refused up front, and 48 MiB in the largest batches a broker
// takes, on one partition, do not cost the other partitions (sharing its
// brokers' Raft connections) their leaders. A single 32-63 MiB batch used to:
// it travelled ahead of every group's heartbeats, and leaders stepped down.
func TestBigBatchKeepsOtherLeaders(t *testing.T) {
	c := startCluster(t, 3)
	cl := c.client()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	const parts = 4
	for p := range parts {
		if err := cl.CreatePartition(ctx, "t", p, c.peers); err != nil {
			t.Fatal(err)
		}
	}
	// Settled: every partition takes a message and every broker is in its term.
	for p := range parts {
		waitLeader(t, cl, "t", p)
		if _, err := cl.Produce(ctx, "t", p, "", 0, []string{"warm-up"}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "every broker in each group's term", func() bool { _, agree := c.raftTerms(t); return agree })
	msg := strings.Repeat("x", 1<<20-16)
	before, _ := c.raftTerms(t)
	for _, mib := range []int{32, 63} { // refused up front: one produce is one Raft entry at most
		msgs := make([]string, mib)
		for i := range msgs {
			msgs[i] = msg
		}
		var be *brokerclient.Error
		if _, err := cl.Produce(ctx, "t", 0, "", 0, msgs); !errors.As(err, &be) || be.Code != http.StatusRequestEntityTooLarge {
			t.Fatalf("%d MiB batch: %v, want 413", mib, err)
		}
	}
	start := time.Now()
	for range 16 { // 48 MiB in the largest batches a broker takes
		if _, err := cl.Produce(ctx, "t", 0, "", 0, []string{msg, msg, msg}); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("16 batches of 3 MiB in %v", time.Since(start).Round(time.Millisecond))
	after, _ := c.raftTerms(t)
	for p := 1; p < parts; p++ {
		g := "p/t/" + strconv.Itoa(p)
		if after[g] != before[g] {
			t.Errorf("group %s went from term %d to %d: its leader stepped down", g, before[g], after[g])
		}
	}
}
