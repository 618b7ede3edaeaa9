package main

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

// TestTableRatios: each concurrency's rows are the medians of the runs, with quorumq's
// ratio to etcd.
func TestTableRatios(t *testing.T) {
	q := map[int][]result{64: {
		{done: 30_000, elapsed: 10 * time.Second, p50: 20 * time.Millisecond, cpu: 3 * time.Second},
		{done: 40_000, elapsed: 10 * time.Second, p50: 10 * time.Millisecond, cpu: 4 * time.Second},
		{done: 10_000, elapsed: 10 * time.Second, p50: 90 * time.Millisecond, cpu: 9 * time.Second},
	}}
	e := map[int][]result{64: {{done: 10_000, elapsed: 10 * time.Second, p50: 40 * time.Millisecond, cpu: 20 * time.Second}}}
	var out bytes.Buffer
	printTable(&out, 3, []int{64}, q, e)
	want := map[string][]string{
		"transfers/s":      {"3000", "1000", "3.00×"},
		"p50":              {"20.00 ms", "40.00 ms", "0.50×"},
		"CPU per transfer": {"0.10 ms", "2.00 ms", "0.05×"},
	}
	for metric, cells := range want {
		var line string
		for _, l := range strings.Split(out.String(), "\n") {
			if strings.HasPrefix(l, "64 ") && strings.Contains(l, "  "+metric+" ") {
				line = l
			}
		}
		for _, c := range cells {
			if !strings.Contains(line, c) {
				t.Errorf("%s row %q lacks %q; table:\n%s", metric, line, c, out.String())
			}
		}
	}
}
