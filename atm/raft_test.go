package atm

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/quorumq/quorumq/atm/bank"
	"github.com/quorumq/quorumq/election"
	"github.com/quorumq/quorumq/election/electiontest"
)

// TestRestartFromSnapshot runs the bank on a real 3-node Raft group: a follower
// snapshots, is killed, misses writes and restarts from its data dir; it must end with
// the same books and the same exactly-once table (a retry is answered, not re-applied).
func TestRestartFromSnapshot(t *testing.T) {
	c := electiontest.NewCluster(t, 3, Group, func(string) raft.FSM { return bank.New() })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	seq := uint64(0)
	apply := func(ops ...bank.Op) []byte {
		t.Helper()
		seq++
		return send(ctx, t, c, c.Leader(t), bank.Batch{Session: "t/0", Seq: seq, Ops: ops})
	}
	for i := range 20 {
		apply(bank.Op{Kind: bank.KindDeposit, Account: fmt.Sprintf("acct%d", i%4), Amount: 100})
	}
	follower := 0
	for c.Nodes[follower].IsLeader() {
		follower++
	}
	if err := c.Nodes[follower].Raft().Snapshot().Error(); err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	c.Kill(follower)
	apply(bank.Op{Kind: bank.KindWithdraw, Account: "acct2", Amount: 500})
	lastOps := []bank.Op{{Kind: bank.KindTransfer, Account: "acct0", To: "acct1", Amount: 250}}
	lastResult := apply(lastOps...)
	lastSeq := seq

	want := books(ctx, t, c, -1)
	node := c.Restart(t, follower)
	restarted := c.FSMs[follower].(*bank.Bank)
	if got := books(ctx, t, c, follower); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("restarted books %v, want %v", got, want)
	}
	// The retry goes through the restarted follower, which forwards it to the leader.
	out := send(ctx, t, c, node, bank.Batch{Session: "t/0", Seq: lastSeq, Ops: lastOps})
	if string(out) != string(lastResult) {
		t.Fatalf("retry answered %x, want the stored %x", out, lastResult)
	}
	if got := books(ctx, t, c, -1); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("retry re-applied: %v, want %v", got, want)
	}
	// The restarted replica's own table (restored from its snapshot plus the log) holds
	// the same answer: had it led, the retry would have been answered the same way.
	local := restarted.Apply(&raft.Log{Data: bank.Batch{Session: "t/0", Seq: lastSeq, Ops: lastOps}.Encode()}).([]byte)
	if string(local) != string(lastResult) || fmt.Sprint(restarted.Accounts()) != fmt.Sprint(want) {
		t.Fatalf("restarted replica answered the retry with %x and books %v", local, restarted.Accounts())
	}
}

// send applies b through n. An outcome raft could not tell (the leader lost its lease
// while committing, as a loaded machine makes it) is sent again through the leader of
// the moment, with the same Seq, as the ATMs do: the bank answers a repeated Seq from
// its table and never applies it twice.
func send(ctx context.Context, t *testing.T, c *electiontest.Cluster, n *election.Node, b bank.Batch) []byte {
	t.Helper()
	for {
		out, err := n.Apply(ctx, b.Encode())
		if !errors.Is(err, election.ErrUnknownOutcome) || ctx.Err() != nil {
			if err != nil {
				t.Fatalf("apply seq %d: %v", b.Seq, err)
			}
			return out
		}
		t.Logf("apply seq %d: %v; again", b.Seq, err)
		n = c.Leader(t)
	}
}

// books are the accounts of node i (of the leader if i < 0) once it applied everything
// the group committed.
func books(ctx context.Context, t *testing.T, c *electiontest.Cluster, i int) []bank.Account {
	t.Helper()
	if i < 0 {
		i = slices.Index(c.Nodes, c.Leader(t))
	}
	if err := c.Nodes[i].ReadBarrier(ctx); err != nil {
		t.Fatalf("read barrier on node %d: %v", i, err)
	}
	return c.FSMs[i].(*bank.Bank).Accounts()
}
