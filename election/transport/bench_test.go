package transport

import (
	"bytes"
	"fmt"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// BenchmarkAppendEntries measures AppendEntries round trips with one 1 KiB
// entry each, from many goroutines spread over 16 groups sharing one connection.
func BenchmarkAppendEntries(b *testing.B) {
	const groups = 16
	a, f := newMux(b), newMux(b)
	senders := make([]*GroupTransport, groups)
	for i := range senders {
		name := fmt.Sprintf("g%d", i)
		senders[i] = openGroup(b, a, name)
		answer(b, openGroup(b, f, name))
	}
	data := bytes.Repeat([]byte("x"), 1024)
	var next atomic.Uint64
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	b.SetParallelism(32) // many groups' raft goroutines at once, not one per core
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		g := senders[next.Add(1)%groups]
		var resp raft.AppendEntriesResponse
		for i := uint64(1); pb.Next(); i++ {
			req := raft.AppendEntriesRequest{Term: 1, PrevLogEntry: i, PrevLogTerm: 1, LeaderCommitIndex: i, Entries: []*raft.Log{{Index: i + 1, Term: 1, Data: data}}}
			if err := g.AppendEntries("f", f.Addr(), &req, &resp); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkPipeline measures one group's pipelined appends (1 KiB entries).
func BenchmarkPipeline(b *testing.B) {
	a, f := newMux(b), newMux(b)
	g := openGroup(b, a, "g")
	answer(b, openGroup(b, f, "g"))
	p, err := g.AppendEntriesPipeline("f", f.Addr())
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	data := bytes.Repeat([]byte("x"), 1024)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	b.ResetTimer()
	go func() {
		for i := 1; i <= b.N; i++ {
			req := raft.AppendEntriesRequest{Term: 1, PrevLogEntry: uint64(i), Entries: []*raft.Log{{Index: uint64(i + 1), Data: data}}}
			if _, err := p.AppendEntries(&req, new(raft.AppendEntriesResponse)); err != nil {
				b.Error(err)
				return
			}
		}
	}()
	for i := 0; i < b.N; i++ {
		if err := (<-p.Consumer()).Error(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkHeartbeats measures the heartbeat fast path of many groups; the
// "idle" case sends them one at a time, as an idle cluster does.
func BenchmarkHeartbeats(b *testing.B) {
	for _, par := range []int{1, 32} {
		b.Run(fmt.Sprintf("parallel=%d", par), func(b *testing.B) { benchHeartbeats(b, par) })
	}
}

func benchHeartbeats(b *testing.B, parallelism int) {
	const groups = 100
	a, f := newMux(b), newMux(b)
	senders := make([]*GroupTransport, groups)
	for i := range senders {
		name := fmt.Sprintf("g%d", i)
		senders[i] = openGroup(b, a, name)
		recv := openGroup(b, f, name)
		recv.SetHeartbeatHandler(func(rpc raft.RPC) {
			rpc.Respond(&raft.AppendEntriesResponse{Term: rpc.Command.(*raft.AppendEntriesRequest).Term, Success: true}, nil)
		})
	}
	var next atomic.Uint64
	b.ReportAllocs()
	b.SetParallelism(parallelism)
	start := cpuTime()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		g := senders[next.Add(1)%groups]
		for pb.Next() {
			if err := heartbeat(g, f.Addr()); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64((cpuTime()-start).Microseconds())/float64(b.N), "cpu-µs/op")
}

// cpuTime is the process's user+system CPU time: the cost per RPC of both
// muxes, which is what idle groups pay.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
