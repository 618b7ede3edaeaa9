package transport

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"sync"
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

// BenchmarkIdleGroups replays what 1,000 idle groups cost the transport: each
// round, every group's leader sends one heartbeat at a random moment within
// 150 ms (raft's heartbeat interval for a 1 s HeartbeatTimeout) to a follower
// process. Both processes live in this one, so cpu-ms/round counts both sides.
func BenchmarkIdleGroups(b *testing.B) {
	for _, delay := range []time.Duration{-1, 2 * time.Millisecond} {
		b.Run(fmt.Sprintf("coalesce=%s", max(delay, 0)), func(b *testing.B) { benchIdle(b, delay) })
	}
}

func benchIdle(b *testing.B, delay time.Duration) {
	const groups, round = 1000, 150 * time.Millisecond
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	var muxes [2]*Mux
	for i := range muxes {
		m, err := New(Config{BindAddr: "127.0.0.1:0", Logger: quiet, CoalesceDelay: delay})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { m.Close() })
		muxes[i] = m
	}
	senders := make([]*GroupTransport, groups)
	for i := range senders {
		name := fmt.Sprintf("p/t/%d", i)
		senders[i] = openGroup(b, muxes[0], name)
		openGroup(b, muxes[1], name).SetHeartbeatHandler(func(rpc raft.RPC) {
			rpc.Respond(&raft.AppendEntriesResponse{Term: 1, Success: true}, nil)
		})
	}
	target := muxes[1].Addr()
	start := cpuTime()
	b.ResetTimer()
	for range b.N {
		var wg sync.WaitGroup
		for _, g := range senders {
			wg.Add(1)
			time.AfterFunc(time.Duration(rand.Int64N(int64(round))), func() {
				defer wg.Done()
				if err := heartbeat(g, target); err != nil {
					b.Error(err)
				}
			})
		}
		wg.Wait()
	}
	b.StopTimer()
	cpu := cpuTime() - start
	b.ReportMetric(float64(cpu.Microseconds())/1000/float64(b.N), "cpu-ms/round")
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N*groups), "cpu-µs/heartbeat")
}
