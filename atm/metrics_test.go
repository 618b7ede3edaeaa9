package atm

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/quorumq/quorumq/atm/bank"
	"github.com/quorumq/quorumq/election/electiontest"
)

// scrape GETs /metrics and returns the value of each series, keyed by its name and
// labels as the text format writes them (`name{label="v"}`).
func scrape(t *testing.T, c *Client) map[string]float64 {
	t.Helper()
	resp, err := http.Get(c.base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %d %s", resp.StatusCode, body)
	}
	series := map[string]float64{}
	for _, line := range strings.Split(string(body), "\n") {
		i := strings.LastIndexByte(line, ' ')
		if line == "" || line[0] == '#' || i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		series[line[:i]] = v
	}
	return series
}

func TestMetricsLocal(t *testing.T) {
	a, node := newLocalATM(t, 5*time.Second)
	c := startHTTP(t, a) // one GET /accounts answered 503 before the ATM is set
	ctx := context.Background()
	for _, name := range []string{"alice", "bob"} {
		if _, err := c.Deposit(ctx, name, "10"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.Withdraw(ctx, "bob", "100"); !isStatus(err, http.StatusConflict) {
		t.Fatalf("overdraw: %v, want 409", err)
	}
	if _, err := c.Balance(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	if resp, err := http.Get(c.base + "/no/such/route"); err == nil {
		resp.Body.Close()
	}

	got := scrape(t, c)
	want := map[string]float64{
		`quorumq_atm_http_requests_total{code="503",method="GET",op="accounts"}`:  1,
		`quorumq_atm_http_requests_total{code="200",method="POST",op="deposit"}`:  2,
		`quorumq_atm_http_requests_total{code="409",method="POST",op="withdraw"}`: 1,
		`quorumq_atm_http_requests_total{code="200",method="GET",op="balance"}`:   1, // one series for every account
		`quorumq_atm_http_requests_total{code="404",method="GET",op="other"}`:     1,
		`quorumq_atm_is_leader{group=""}`:                                         1,
		`quorumq_atm_applied_index{group=""}`:                                     float64(node.AppliedIndex()),
		`quorumq_atm_raft_groups`:                                                 1,
		`quorumq_atm_batch_ops_count`:                                             3, // each deposit and the refused withdrawal: one entry each
		`quorumq_atm_batch_ops_sum`:                                               3,
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
	for k := range got {
		if strings.HasPrefix(k, "quorumq_atm_raft_") && k != "quorumq_atm_raft_groups" {
			t.Errorf("%s reported for a node without Raft internals", k)
		}
	}
}

// TestMetricsRaft reads the Raft series of an ATM on a real one-member group.
func TestMetricsRaft(t *testing.T) {
	g := electiontest.NewCluster(t, 1, Group, func(string) raft.FSM { return bank.New() })
	node := g.Leader(t)
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	a := &ATM{id: "atm1", node: node, bank: g.FSMs[0].(*bank.Bank), timeout: 10 * time.Second,
		batch: newBatcher(node.Apply, "atm1", 2, 64, 10*time.Second, logger)}
	ctx, cancel := context.WithCancel(context.Background())
	a.batch.start(ctx)
	t.Cleanup(func() { cancel(); a.batch.wait() })
	c := startHTTP(t, a)
	if _, err := c.Deposit(context.Background(), "alice", "1"); err != nil {
		t.Fatal(err)
	}

	got := scrape(t, c)
	for k, v := range map[string]float64{
		`quorumq_atm_raft_state{group="atm",state="leader"}`:   1,
		`quorumq_atm_raft_state{group="atm",state="follower"}`: 0,
		`quorumq_atm_is_leader{group="atm"}`:                   1,
	} {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
	applied, commit, last := got[`quorumq_atm_applied_index{group="atm"}`], got[`quorumq_atm_raft_commit_index{group="atm"}`], got[`quorumq_atm_raft_last_log_index{group="atm"}`]
	if applied < 1 || commit < applied || last < commit || got[`quorumq_atm_raft_term{group="atm"}`] < 1 {
		t.Errorf("indexes applied=%v commit=%v last=%v term=%v: want 1 <= applied <= commit <= last, term >= 1",
			applied, commit, last, got[`quorumq_atm_raft_term{group="atm"}`])
	}
}
