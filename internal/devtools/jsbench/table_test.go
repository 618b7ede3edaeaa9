package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/quorumq/quorumq/internal/brokerbench"
)

// TestTableShowsCPU: a throughput row is followed by its CPU row, medians of the runs,
// with the ratio of the CPU figures.
func TestTableShowsCPU(t *testing.T) {
	w := jsWorkload{clients: 4, async: true, msgs: 1000}
	qr := qRun{4, 100, 0}
	rows := []row{{"4 producers", qr, w, "msgs/s"}}
	q := map[qRun][]brokerbench.Result{qr: {
		{Msgs: 1_000_000, Elapsed: 10 * time.Second, CPU: 8 * time.Second},
		{Msgs: 1_000_000, Elapsed: 10 * time.Second, CPU: 10 * time.Second},
		{Msgs: 1_000_000, Elapsed: 5 * time.Second, CPU: 40 * time.Second},
	}}
	js := map[string]map[jsWorkload][]jsResult{}
	for _, d := range durabilities {
		js[d.name] = map[jsWorkload][]jsResult{w: {{rate: 50_000, msgs: 1_000_000, cpu: 20 * time.Second}}}
	}
	var out bytes.Buffer
	printTable(&out, 3, rows, q, js)
	lines := strings.Split(out.String(), "\n")
	var cpu string
	for _, l := range lines {
		if strings.Contains(l, cpuMetric) {
			cpu = l
		}
	}
	// quorumq's median: 10 s per million; JetStream's 20: ratio 0.50.
	if !strings.Contains(cpu, "10.00") || !strings.Contains(cpu, "20.00") || !strings.Contains(cpu, "0.50×") {
		t.Fatalf("CPU row %q; table:\n%s", cpu, out.String())
	}
	if !strings.Contains(out.String(), "median of 3 runs") {
		t.Fatalf("table does not say it shows medians:\n%s", out.String())
	}
}

// TestTableFailedRuns: a JetStream workload whose runs all failed shows as failed, and
// the other mode's ratio is still printed.
func TestTableFailedRuns(t *testing.T) {
	w := jsWorkload{clients: 64, async: true, msgs: 1000}
	qr := qRun{64, 1, 0}
	q := map[qRun][]brokerbench.Result{qr: {{Msgs: 20_000, Elapsed: 10 * time.Second}}}
	js := map[string]map[jsWorkload][]jsResult{
		"default": {w: {{rate: 1000, msgs: 1000}}},
		"always":  {},
	}
	var out bytes.Buffer
	printTable(&out, 1, []row{{"64 producers", qr, w, "msgs/s"}}, q, js)
	if !strings.Contains(out.String(), "2.00×") || !strings.Contains(out.String(), "failed") {
		t.Fatalf("table:\n%s", out.String())
	}
}
