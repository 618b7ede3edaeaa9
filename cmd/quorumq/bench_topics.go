package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"

	"github.com/quorumq/quorumq/clientlib"
)

func init() { benchCmd.AddCommand(newBenchTopicsCmd()) }

// topicsBench is a `quorumq bench topics` run: metadata at scale, many topics created
// by a few clients at once, as an operator's provisioning script would.
type topicsBench struct {
	topics     int
	partitions int
	clients    int
	prefix     string
	lists      int
}

func newBenchTopicsCmd() *cobra.Command {
	var b topicsBench
	cmd := sdkBenchCmd(&cobra.Command{
		Use:   "topics",
		Short: "Create many topics with a few clients; prints p50/p99 of create and the latency of GET /topics",
		Long: `Create --topics topics of --partitions partitions each through the Go SDK with
--clients clients at once (each one create in flight), against a running cluster. A
create counts from the call until the managers answered it (the SDK's retries
included); every failure is counted and the first one printed. Then GET /topics is
timed --lists times with every topic in place.`,
		Example: `  quorumq bench topics --consul 127.0.0.1:8500 --topics 2000 --partitions 5 --clients 4`,
	}, func() error {
		if b.topics <= 0 || b.partitions <= 0 || b.clients <= 0 || b.lists <= 0 {
			return errors.New("bench topics: --topics, --partitions, --clients and --lists must be positive")
		}
		return nil
	}, b.run)
	f := cmd.Flags()
	f.IntVar(&b.topics, "topics", 2000, "topics to create")
	f.IntVar(&b.partitions, "partitions", 5, "partitions per topic")
	f.IntVar(&b.clients, "clients", 4, "concurrent clients, one create in flight each")
	f.StringVar(&b.prefix, "prefix", fmt.Sprintf("bench-%d-", time.Now().Unix()), "topic name prefix (topics are PREFIX0, PREFIX1, ...)")
	f.IntVar(&b.lists, "lists", 20, "GET /topics calls timed at the end")
	return cmd
}

func (b *topicsBench) run(ctx context.Context, c *clientlib.Client, timeout time.Duration, out io.Writer) error {
	fmt.Fprintf(out, "bench topics: %d topics × %d partitions, %d clients\n", b.topics, b.partitions, b.clients)
	var (
		next      atomic.Int64
		mu        sync.Mutex
		latencies []time.Duration
		failed    int
		firstErr  error
		wg        sync.WaitGroup
		byOrder   = make([]time.Duration, b.topics) // by topic number; 0 where it failed
	)
	start := time.Now()
	for range b.clients {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= b.topics || ctx.Err() != nil {
					return
				}
				cctx, cancel := context.WithTimeout(ctx, timeout)
				t0 := time.Now()
				err := c.Admin().CreateTopic(cctx, fmt.Sprintf("%s%d", b.prefix, i), b.partitions)
				d := time.Since(t0)
				cancel()
				mu.Lock()
				if err != nil {
					failed++
					if firstErr == nil {
						firstErr = err
					}
				} else {
					latencies = append(latencies, d)
					byOrder[i] = d
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	fmt.Fprintf(out, "create: %d created, %d failed in %.1fs (%.1f topics/s)\n",
		len(latencies), failed, elapsed.Seconds(), float64(len(latencies))/elapsed.Seconds())
	if firstErr != nil {
		fmt.Fprintf(out, "first failure: %v\n", firstErr)
	}
	printQuantiles(out, "create latency", latencies)
	printTenths(out, byOrder)

	var lists []time.Duration
	var names int
	for range b.lists {
		t0 := time.Now()
		got, err := c.Admin().ListTopics(ctx)
		if err != nil {
			return fmt.Errorf("bench topics: GET /topics: %w", err)
		}
		lists = append(lists, time.Since(t0))
		names = len(got)
	}
	fmt.Fprintf(out, "GET /topics: %d topics listed\n", names)
	printQuantiles(out, "GET /topics latency", lists)
	if failed > 0 {
		return fmt.Errorf("bench topics: %d creates failed", failed)
	}
	return nil
}

// printTenths prints the create latency of each tenth of the topics in creation order:
// the metadata, the Raft groups and the brokers' idle work all grow as topics are added,
// and the later creates show what that costs.
func printTenths(out io.Writer, byOrder []time.Duration) {
	if len(byOrder) < 10 {
		return
	}
	for t := range 10 {
		var ds []time.Duration
		from, to := t*len(byOrder)/10, (t+1)*len(byOrder)/10
		for _, d := range byOrder[from:to] {
			if d > 0 {
				ds = append(ds, d)
			}
		}
		printQuantiles(out, fmt.Sprintf("  topics %d-%d", from, to-1), ds)
	}
}

// printQuantiles prints p50, p99 and max of ds (sorted in place).
func printQuantiles(out io.Writer, what string, ds []time.Duration) {
	if len(ds) == 0 {
		return
	}
	slices.Sort(ds)
	q := func(f float64) time.Duration { return ds[int(f*float64(len(ds)-1))].Round(100 * time.Microsecond) }
	fmt.Fprintf(out, "%s: p50 %v  p99 %v  max %v\n", what, q(0.50), q(0.99), q(1))
}
