package atm

import (
	"strings"
	"sync"

	"github.com/gofiber/fiber/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/quorumq/quorumq/internal/raftmetrics"
)

// mountMetrics counts every request of s and serves /metrics (the ATM's Raft state, its
// requests by operation, its batches), before the ATM has joined its group too: then
// only the request counts are there. Call it before any route is added, so that the
// counting runs first.
func mountMetrics(s *server, guard fiber.Handler) {
	// The routes are all added by the time the first request arrives.
	ops := sync.OnceValue(func() map[string]string {
		ops := map[string]string{}
		for _, r := range s.app.GetRoutes(true) {
			op := firstSegment(r.Path)
			ops[op] = op
		}
		return ops
	})
	mt := raftmetrics.New(raftmetrics.Config{
		Prefix: "quorumq_atm",
		Members: raftmetrics.One(func() raftmetrics.Member {
			if a := s.joined(); a != nil {
				return a.node
			}
			return nil
		}),
		// A request counts under the first segment of its path when that names a route
		// (deposit, balance, ...), else "other". Not the raw path: account names would
		// make the label set unbounded. Not the matched route either: a request refused
		// by a group middleware (503 while starting) has not reached its route. The
		// label is the route's own string: c.Path() is Fiber's reused buffer.
		OpLabel: "op",
		Op: func(c *fiber.Ctx) string {
			if op, ok := ops()[firstSegment(c.Path())]; ok {
				return op
			}
			return "other"
		},
	})
	mt.MustRegister(batchCollector{s})
	mt.Mount(s.app, guard)
}

func firstSegment(path string) string {
	seg, _, _ := strings.Cut(strings.TrimPrefix(path, "/"), "/")
	return seg
}

// newBatchSizes is the histogram of operations per Raft entry that each batcher fills.
func newBatchSizes() prometheus.Histogram {
	return prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: batchSizesName, Help: batchSizesHelp,
		Buckets: prometheus.ExponentialBuckets(1, 2, 10), // 1 … 512 (MaxBatch defaults to 256)
	})
}

const (
	batchSizesName = "quorumq_atm_batch_ops"
	batchSizesHelp = "Operations per Raft entry (group commit)."
)

var batchSizesDesc = prometheus.NewDesc(batchSizesName, batchSizesHelp, nil, nil)

// batchCollector reports the histogram of the ATM's batcher, once the ATM exists.
type batchCollector struct{ s *server }

func (batchCollector) Describe(ch chan<- *prometheus.Desc) { ch <- batchSizesDesc }

func (bc batchCollector) Collect(ch chan<- prometheus.Metric) {
	if a := bc.s.joined(); a != nil {
		a.batch.sizes.Collect(ch)
	}
}

// joined is the ATM once the server has it, else nil.
func (s *server) joined() *ATM {
	select {
	case <-s.ready:
		return s.atm
	default:
		return nil
	}
}
