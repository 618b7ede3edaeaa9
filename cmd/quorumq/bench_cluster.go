package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/quorumq/quorumq/clientlib"
)

func init() { benchCmd.AddCommand(newBenchClusterCmd()) }

// clusterBench is a `quorumq bench cluster` run: producers sending through the SDK to
// a running cluster, as an application would.
type clusterBench struct {
	topic      string
	partitions int
	producers  int
	size       int
	batch      int
	duration   time.Duration
}

func newBenchClusterCmd() *cobra.Command {
	var b clusterBench
	cmd := sdkBenchCmd(&cobra.Command{
		Use:   "cluster",
		Short: "Produce through the SDK against a running cluster; prints msgs/s and p50/p99 ack latency",
		Long: `Produce to a running cluster through the Go SDK, as applications do (straight to
the partition leaders named by the managers' metadata): --producers producers, each
with one request in flight (one message, or --batch messages), for --duration. The topic is created when missing. Latency is per request, from the call
until the cluster acknowledged it (a majority of the partition's replicas have it).`,
		Example: `  quorumq bench cluster --consul 127.0.0.1:8500 --topic bench --producers 16 --size 1024 --duration 20s
  quorumq bench cluster --managers 127.0.0.1:8101,127.0.0.1:8102 --batch 100`,
	}, func() error {
		if b.producers <= 0 || b.size <= 0 || b.batch <= 0 || b.duration <= 0 {
			return errors.New("bench cluster: --producers, --size, --batch and --duration must be positive")
		}
		return nil
	}, b.run)
	f := cmd.Flags()
	f.StringVar(&b.topic, "topic", "bench", "topic to produce to (created when missing)")
	f.IntVar(&b.partitions, "partitions", 0, "partitions of the topic if it is created (0: the managers' default)")
	f.IntVar(&b.producers, "producers", 4, "concurrent producers, one request in flight each")
	f.IntVar(&b.size, "size", 1024, "message size in bytes")
	f.IntVar(&b.batch, "batch", 1, "messages per request")
	f.DurationVar(&b.duration, "duration", 10*time.Second, "how long to produce")
	return cmd
}

func (b *clusterBench) run(ctx context.Context, c *clientlib.Client, setupTimeout time.Duration, out io.Writer) error {
	sctx, cancel := context.WithTimeout(ctx, setupTimeout)
	defer cancel()
	if err := c.Admin().CreateTopic(sctx, b.topic, b.partitions); err != nil && !errors.Is(err, clientlib.ErrTopicExists) {
		return fmt.Errorf("bench cluster: %w", err)
	}
	info, err := c.Admin().DescribeTopic(sctx, b.topic)
	if err != nil {
		return fmt.Errorf("bench cluster: %w", err)
	}
	producers := make([]*clientlib.Producer, b.producers)
	for i := range producers {
		if producers[i], err = c.NewProducer(sctx, b.topic); err != nil {
			return fmt.Errorf("bench cluster: producer %d: %w", i, err)
		}
	}
	fmt.Fprintf(out, "bench cluster: %d producers, %d-byte messages, %d per request, topic %s (%d partitions), %v\n",
		b.producers, b.size, b.batch, b.topic, len(info.Partitions), b.duration)

	records := make([]clientlib.Record, b.batch)
	for i := range records {
		records[i] = clientlib.Record{Value: strings.Repeat("x", b.size)}
	}
	// A new topic answers before its partitions have elected leaders (they open in the
	// background): one message to every partition before the clock starts waits for
	// them, so a short run measures the cluster and not the topic's start.
	for _, part := range info.Partitions {
		wp, err := c.NewProducer(sctx, b.topic, clientlib.ToPartition(part.ID))
		if err == nil {
			_, err = wp.Send(sctx, records[0])
			err = errors.Join(err, wp.Close(sctx))
		}
		if err != nil {
			return fmt.Errorf("bench cluster: first message to partition %d: %w", part.ID, err)
		}
	}
	var (
		mu        sync.Mutex
		acked     int
		failed    int
		firstErr  error
		latencies []time.Duration
		wg        sync.WaitGroup
	)
	runCtx, stop := context.WithTimeout(ctx, b.duration)
	defer stop()
	start := time.Now()
	for _, p := range producers {
		wg.Go(func() {
			var mine []time.Duration
			var ok, bad int
			var lastErr error
			// Requests end with the run: one that is cut off counts as neither.
			for runCtx.Err() == nil {
				t0 := time.Now()
				var err error
				if b.batch == 1 {
					_, err = p.Send(runCtx, records[0])
				} else {
					_, err = p.SendBatch(runCtx, records)
				}
				switch {
				case err == nil:
					ok += b.batch
					mine = append(mine, time.Since(t0))
				case runCtx.Err() == nil:
					bad += b.batch
					lastErr = err
				}
			}
			mu.Lock()
			defer mu.Unlock()
			acked, failed = acked+ok, failed+bad
			latencies = append(latencies, mine...)
			if firstErr == nil {
				firstErr = lastErr
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	for _, p := range producers {
		_ = p.Close(ctx)
	}

	fmt.Fprintf(out, "sent: %d messages acknowledged, %d failed in %.1fs\n", acked, failed, elapsed.Seconds())
	if firstErr != nil {
		fmt.Fprintf(out, "an error: %v\n", firstErr)
	}
	rate := float64(acked) / elapsed.Seconds()
	fmt.Fprintf(out, "throughput: %.0f msgs/s (%.2f MB/s)\n", rate, rate*float64(b.size)/1e6)
	if len(latencies) > 0 {
		slices.Sort(latencies)
		q := func(f float64) time.Duration {
			return latencies[int(f*float64(len(latencies)-1))].Round(10 * time.Microsecond)
		}
		fmt.Fprintf(out, "ack latency per request: p50 %v  p99 %v  max %v\n", q(0.50), q(0.99), q(1))
	}
	if acked == 0 {
		return fmt.Errorf("bench cluster: no message acknowledged")
	}
	return nil
}
