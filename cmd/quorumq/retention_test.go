package main

import (
	"testing"
	"time"
)

func TestRetentionFlags(t *testing.T) {
	for _, tc := range []struct {
		ms, bytes string
		time      time.Duration
		size      int64
		bad       bool
	}{
		{ms: "60000", time: time.Minute},
		{ms: "90s", time: 90 * time.Second},
		{ms: "7d", time: 7 * 24 * time.Hour},
		{bytes: "1048576", size: 1 << 20},
		{bytes: "512MiB", size: 512 << 20},
		{bytes: "1GB", size: 1e9},
		{ms: "-5", bad: true},
		{ms: "soon", bad: true},
		{bytes: "1XB", bad: true},
		{bytes: "-1", bad: true},
	} {
		f := retentionFlags{ms: tc.ms, bytes: tc.bytes}
		r, err := f.parse()
		if (err != nil) != tc.bad || !tc.bad && (r.Time != tc.time || r.Bytes != tc.size) {
			t.Errorf("%q %q: %+v %v", tc.ms, tc.bytes, r, err)
		}
	}
}
