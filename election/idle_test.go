package election_test

import (
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/quorumq/quorumq/election"
)

// BenchmarkIdleGroups measures what idle Raft groups cost: 3 simulated processes (one
// Mux each, all in this test process) run G groups each with IdleTiming, every group on
// all three. One measurement per size (minutes for 1,000 groups); run without -race:
//
//	go test -run '^$' -bench IdleGroups -benchtime 1x -timeout 30m ./election/
//
// QUORUMQ_IDLE_GROUPS (default "100,1000"), QUORUMQ_IDLE_SECONDS (default 10),
// QUORUMQ_IDLE_STORE=bolt (a bolt file per group instead of in-memory stores),
// QUORUMQ_IDLE_PPROF=file (CPU profile of the idle window), QUORUMQ_IDLE_HEARTBEAT=1.5s
// (HeartbeatTimeout, ElectionTimeout and LeaderLeaseTimeout instead of IdleTiming's).
func BenchmarkIdleGroups(b *testing.B) {
	sizes := strings.Split(envOr("QUORUMQ_IDLE_GROUPS", "100,1000"), ",")
	secs, _ := strconv.Atoi(envOr("QUORUMQ_IDLE_SECONDS", "10"))
	for _, s := range sizes {
		g, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil {
			b.Fatalf("QUORUMQ_IDLE_GROUPS: %v", err)
		}
		b.Run(fmt.Sprintf("groups=%d", g), func(b *testing.B) {
			for range b.N {
				measureIdle(b, g, time.Duration(secs)*time.Second)
			}
		})
	}
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func measureIdle(t testing.TB, groups int, window time.Duration) {
	const nodes = 3
	timing := election.IdleTiming()
	if v := os.Getenv("QUORUMQ_IDLE_HEARTBEAT"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("QUORUMQ_IDLE_HEARTBEAT: %v", err)
		}
		timing.HeartbeatTimeout, timing.ElectionTimeout, timing.LeaderLeaseTimeout = d, d, d
	}
	start := time.Now()
	all, _ := startGroups(t, nodes, groups, timing, os.Getenv("QUORUMQ_IDLE_STORE") != "bolt")
	opened := time.Since(start)
	leaders := map[string]int{}
	for g := 0; g < groups; {
		if id := all[0][g].Leader().ID; id != "" && all[1][g].Leader().ID == id && all[2][g].Leader().ID == id {
			leaders[id]++
			g++
			continue
		}
		if time.Since(start) > 10*time.Minute {
			t.Fatalf("group %d has no agreed leader after %s", g, time.Since(start))
		}
		time.Sleep(10 * time.Millisecond)
	}
	elected := time.Since(start)
	time.Sleep(2 * time.Second) // let the last elections' traffic drain
	terms := func() (sum uint64) {
		for _, n := range all[0] {
			sum += n.Raft().CurrentTerm()
		}
		return sum
	}
	termsBefore := terms()
	runtime.GC()

	if path := os.Getenv("QUORUMQ_IDLE_PPROF"); path != "" {
		f, err := os.Create(path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		pprof.StartCPUProfile(f)
		defer pprof.StopCPUProfile()
	}
	cpu0, wall0 := cpuTime(t), time.Now()
	time.Sleep(window)
	cpu, wall := cpuTime(t)-cpu0, time.Since(wall0)
	pct := 100 * cpu.Seconds() / wall.Seconds()
	if b, ok := t.(*testing.B); ok {
		b.ReportMetric(pct/nodes, "%cpu/node")
	}

	t.Logf("timing %+v", timing)
	t.Logf("%d groups x %d nodes (one process, %d Muxes): opened in %s, all led after %s; leaders per node %v",
		groups, nodes, nodes, opened.Round(time.Millisecond), elected.Round(time.Millisecond), leaders)
	t.Logf("idle %s: process CPU %.1f%% of a core = %.1f%% per node; RSS %d MiB (%d MiB per node); goroutines %d; elections during the window %d",
		wall.Round(time.Millisecond), pct, pct/nodes, rssKiB(t)/1024, rssKiB(t)/1024/nodes, runtime.NumGoroutine(), terms()-termsBefore)
}

func cpuTime(t testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func rssKiB(t testing.TB) int {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			return kb
		}
	}
	return 0
}
