package main

import (
	"testing"
	"time"
)

// Outputs as natscli v0.5.1 prints them.
const (
	oneClient = `13:58:34 [1] Starting JetStream synchronous publisher, publishing 3,000 messages

NATS JetStream synchronous publisher stats: 2,278 msgs/sec ~ 2.2 MiB/sec ~ min: 172.08us ~ avg: 438.29us ~ max: 5,254.81us ~ P50: 413.18us ~ P90: 579.52us ~ P99: 901.18us ~ P99.9: 3,394.62us
`
	fourClients = `  [1] 1,190 msgs/sec ~ 1.2 MiB/sec ~ min: 243.05us ~ avg: 839.39us ~ max: 21,639.60us ~ P50: 748.05us ~ P90: 1,227.76us ~ P99: 2,121.29us ~ P99.9: 5,738.04us (5,000 msgs)
  [2] 1,189 msgs/sec ~ 1.2 MiB/sec ~ min: 218.07us ~ avg: 840.27us ~ max: 21,594.26us ~ P50: 751.72us ~ P90: 1,222.12us ~ P99: 2,173.60us ~ P99.9: 5,721.04us (5,000 msgs)

 NATS JetStream synchronous publisher aggregated stats: 4,745 msgs/sec ~ 4.6 MiB/sec
 message rates min 1,186 | avg 1,188 | max 1,190 | stddev 1 msgs
 latencies per operation min 218.07us | avg 840.66us | max 21,639.60us | stddev 982.85us | P50 750.31us | P90 1,233.67us | P99 2,160.58us | P99.9: 5,721.04us
`
)

func TestParseBench(t *testing.T) {
	us := func(f float64) time.Duration { return time.Duration(f * float64(time.Microsecond)) }
	tests := []struct {
		name     string
		out      string
		rate     float64
		p50, p99 time.Duration
		wantErr  bool
	}{
		{"one client", oneClient, 2278, us(413.18), us(901.18), false},
		{"aggregated", fourClients, 4745, us(750.31), us(2160.58), false},
		{"no stats", "nats: error: context deadline exceeded\n", 0, 0, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := parseBench(tt.out, true)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, want error %v", err, tt.wantErr)
			}
			if tt.wantErr {
				return
			}
			if r.rate != tt.rate || r.p50 != tt.p50 || r.p99 != tt.p99 {
				t.Errorf("got rate %v p50 %v p99 %v, want %v %v %v", r.rate, r.p50, r.p99, tt.rate, tt.p50, tt.p99)
			}
		})
	}
}
