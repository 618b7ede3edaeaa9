package clientlib

import (
	"strings"
	"testing"
)

func TestBatchLen(t *testing.T) {
	recs := func(n, size int) []Record {
		out := make([]Record, n)
		for i := range out {
			out[i].Value = strings.Repeat("x", size)
		}
		return out
	}
	for _, tc := range []struct {
		name       string
		q          []Record
		maxRecords int
		want       int
	}{
		{"empty", nil, 500, 0},
		{"small records: the count caps", recs(1000, 100), 500, 500},
		{"fewer than the cap", recs(10, 100), 500, 10},
		{"16 KiB records: the bytes cap", recs(500, 16<<10), 500, maxBatchBytes / (16 << 10)},
		{"one record over the byte cap goes alone", recs(3, maxBatchBytes+1), 500, 1},
		{"exactly the byte cap", recs(2, maxBatchBytes/2), 500, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := batchLen(tc.q, tc.maxRecords); got != tc.want {
				t.Fatalf("batchLen = %d, want %d", got, tc.want)
			}
		})
	}
}
