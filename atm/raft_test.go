package atm

import (
	"context"
	"fmt"
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
	leader := c.Leader(t)
	seq := uint64(0)
	apply := func(ops ...bank.Op) []byte {
		t.Helper()
		seq++
		out, err := leader.Apply(ctx, bank.Batch{Session: "t/0", Seq: seq, Ops: ops}.Encode())
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	for i := range 20 {
		apply(bank.Op{Kind: bank.KindDeposit, Account: fmt.Sprintf("acct%d", i%4), Amount: 100})
	}
	follower := 0
	for c.Nodes[follower] == leader {
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

	node := c.Restart(t, follower)
	restarted := c.FSMs[follower].(*bank.Bank)
	want := leaderBank(c, leader).Accounts()
	deadline := time.Now().Add(electiontest.Wait)
	for node.AppliedIndex() < leader.AppliedIndex() && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if got := restarted.Accounts(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("restarted books %v, want %v", got, want)
	}
	// The retry goes through the restarted follower, which forwards it to the leader.
	out, err := node.Apply(ctx, bank.Batch{Session: "t/0", Seq: lastSeq, Ops: lastOps}.Encode())
	if err != nil {
		t.Fatal(err)
	}
	if string(out) != string(lastResult) {
		t.Fatalf("retry answered %x, want the stored %x", out, lastResult)
	}
	if got := leaderBank(c, leader).Accounts(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("retry re-applied: %v, want %v", got, want)
	}
	// The restarted replica's own table (restored from its snapshot plus the log) holds
	// the same answer: had it led, the retry would have been answered the same way.
	local := restarted.Apply(&raft.Log{Data: bank.Batch{Session: "t/0", Seq: lastSeq, Ops: lastOps}.Encode()}).([]byte)
	if string(local) != string(lastResult) || fmt.Sprint(restarted.Accounts()) != fmt.Sprint(want) {
		t.Fatalf("restarted replica answered the retry with %x and books %v", local, restarted.Accounts())
	}
}

func leaderBank(c *electiontest.Cluster, leader *election.Node) *bank.Bank {
	for i, n := range c.Nodes {
		if n == leader {
			return c.FSMs[i].(*bank.Bank)
		}
	}
	return nil
}
