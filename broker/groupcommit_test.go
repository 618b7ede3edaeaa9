package broker_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/quorumq/quorumq/broker"
)

// TestGroupCommitConcurrentProducers: producers that arrive together share entries,
// and one that does not fit in the entry being formed (3 MiB batches against the
// 4 MiB bound) is carried into the next one even when nobody produces after it. Every
// batch is acknowledged once, at offsets no other batch got.
func TestGroupCommitConcurrentProducers(t *testing.T) {
	_, cl := startBrokerWith(t, broker.Config{ID: "b1", MaxMessageBytes: 1 << 20})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	big := strings.Repeat("x", 1<<20-16)
	tests := []struct {
		name      string
		producers int
		msgs      []string
	}{
		{"one message each", 16, []string{"m"}},
		{"3 MiB each", 4, []string{big, big, big}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var (
				wg     sync.WaitGroup
				mu     sync.Mutex
				firsts []uint64
			)
			for p := range tt.producers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					r, err := cl.Produce(ctx, "t", 0, fmt.Sprintf("%s-%d", tt.name, p), 0, tt.msgs)
					if err != nil || r.Count != len(tt.msgs) || r.Duplicate {
						t.Errorf("producer %d: %+v %v", p, r, err)
						return
					}
					mu.Lock()
					firsts = append(firsts, r.Offset)
					mu.Unlock()
				}()
			}
			wg.Wait()
			slices.Sort(firsts)
			for i := 1; i < len(firsts); i++ {
				if firsts[i]-firsts[i-1] != uint64(len(tt.msgs)) {
					t.Fatalf("batches of %d messages at offsets %v: overlapping or apart", len(tt.msgs), firsts)
				}
			}
		})
	}
}
