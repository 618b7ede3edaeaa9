package broker

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/quorumq/quorumq/broker/brokerapi"
	"github.com/quorumq/quorumq/broker/partition"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// run starts a broker in-process and returns a stop function.
func run(t *testing.T, cfg Config) (*Broker, func()) {
	t.Helper()
	b, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			cancel()
			<-done
		}
	}
	t.Cleanup(stop)
	return b, stop
}

func eventually(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out: %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestFollowerCatchesUpBySnapshot: a broker is stopped, the leader writes on, takes a
// snapshot and drops its log; the restarted broker gets the partition through raft's
// InstallSnapshot — the state-only snapshot plus every message streamed from the
// leader's store — and ends with exactly the leader's messages.
func TestFollowerCatchesUpBySnapshot(t *testing.T) {
	timing := PartitionTiming()
	timing.TrailingLogs = 5
	timing.SnapshotThreshold = 10
	dir := t.TempDir()
	var (
		cfgs  []Config
		bs    []*Broker
		stops []func()
		peers []brokerapi.Peer
	)
	for i := range 3 {
		cfg := Config{ID: fmt.Sprintf("b%d", i+1), DataDir: filepath.Join(dir, fmt.Sprint(i)),
			RaftAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", Timing: timing, Logger: quiet}
		b, stop := run(t, cfg)
		cfg.RaftAddr, cfg.HTTPAddr = b.RaftAddr(), b.HTTPAddr() // the same ports after a restart
		cfgs, bs, stops = append(cfgs, cfg), append(bs, b), append(stops, stop)
		peers = append(peers, brokerapi.Peer{ID: cfg.ID, RaftAddr: b.RaftAddr(), HTTPAddr: b.HTTPAddr()})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for _, b := range bs {
		if _, _, err := b.ensureReplica(ctx, replicaDesc{Topic: "t", Partition: 0, Peers: peers}); err != nil {
			t.Fatal(err)
		}
	}
	leader := func() *replica {
		for _, b := range bs[:2] {
			if r, ok := b.replica("t", 0); ok && r.node.IsLeader() {
				return r
			}
		}
		return nil
	}
	produce := func(n int) {
		for range n {
			var l *replica
			eventually(t, "a leader among b1, b2", func() bool { l = leader(); return l != nil })
			if _, err := l.produce(ctx, partition.Batch{Msgs: [][]byte{[]byte(fmt.Sprintf("m%d", time.Now().UnixNano()))}}); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Keep b3 out of the lead: stop it, then write and snapshot without it.
	stops[2]()
	produce(50)
	l := leader()
	if err := l.node.Raft().Snapshot().Error(); err != nil {
		t.Fatal(err)
	}
	produce(5)
	t.Logf("leader snapshot at index %s", l.node.Raft().Stats()["last_snapshot_index"])

	b3, _ := run(t, cfgs[2])
	eventually(t, "b3 reopened and caught up", func() bool {
		r, ok := b3.replica("t", 0)
		if !ok {
			return false
		}
		_, next, _, _ := r.fsm.Info()
		_, want, _, _ := leader().fsm.Info()
		return next == want && next == 55
	})
	r3, _ := b3.replica("t", 0)
	got, err := r3.fsm.Messages(0, 55)
	if err != nil {
		t.Fatal(err)
	}
	want, err := leader().fsm.Messages(0, 55)
	if err != nil {
		t.Fatal(err)
	}
	for i := range want {
		if string(got[i]) != string(want[i]) {
			t.Fatalf("message %d: follower %q, leader %q", i, got[i], want[i])
		}
	}
	if s := r3.node.Raft().Stats(); s["last_snapshot_index"] == "0" {
		t.Fatalf("b3 caught up without a snapshot (stats %v)", s)
	}
	// A replica makes its produce queue at its first produce (produceQueue): b3 never
	// had one.
	if r3.queue != nil || leader().queue == nil {
		t.Errorf("produce queue made: on follower b3 %v, on the leader %v; want on the leader only", r3.queue != nil, leader().queue != nil)
	}
}

// TestMembership: a replica created on a second broker with the current members as
// peers joins the partition and gets its data; DELETE of the member removes it from
// the group, DELETE of the replica removes its data.
func TestMembership(t *testing.T) {
	dir := t.TempDir()
	newBroker := func(id string) (*Broker, brokerapi.Peer) {
		b, _ := run(t, Config{ID: id, DataDir: filepath.Join(dir, id), RaftAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", Logger: quiet})
		return b, brokerapi.Peer{ID: id, RaftAddr: b.RaftAddr(), HTTPAddr: b.HTTPAddr()}
	}
	b1, p1 := newBroker("b1")
	b2, _ := newBroker("b2")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r1, _, err := b1.ensureReplica(ctx, replicaDesc{Topic: "t", Partition: 0, Peers: []brokerapi.Peer{p1}})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "b1 leads", r1.node.IsLeader)
	if _, err := r1.produce(ctx, partition.Batch{Msgs: [][]byte{[]byte("before b2")}}); err != nil {
		t.Fatal(err)
	}
	r2, _, err := b2.ensureReplica(ctx, replicaDesc{Topic: "t", Partition: 0, Peers: []brokerapi.Peer{p1}})
	if err != nil {
		t.Fatal(err)
	}
	members := func() int {
		st := r1.status(ctx)
		return len(st.Members)
	}
	eventually(t, "b2 joined", func() bool { return members() == 2 })
	eventually(t, "b2 has the message", func() bool { _, next, _, _ := r2.fsm.Info(); return next == 1 })

	for _, req := range []struct{ addr, path string }{
		{b1.HTTPAddr(), "/replicas/t/0/members/b2"}, // through the API, on the leader
		{b2.HTTPAddr(), "/replicas/t/0"},
	} {
		hr, _ := http.NewRequest(http.MethodDelete, "http://"+req.addr+req.path, nil)
		resp, err := http.DefaultClient.Do(hr)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("DELETE %s: %v %v", req.path, resp.Status, err)
		}
		resp.Body.Close()
	}
	eventually(t, "b2 removed", func() bool { return members() == 1 })
	if _, ok := b2.replica("t", 0); ok {
		t.Fatal("b2 still lists the deleted replica")
	}
	if recs, _ := b2.db.Replicas(); len(recs) != 0 {
		t.Fatalf("b2 still records %v", recs)
	}
}
