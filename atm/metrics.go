package atm

import (
	"strconv"
	"strings"
	"sync"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/middleware/adaptor"
	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics are the ATM's Prometheus series, in a registry of its own (tests run several
// ATMs in one process). They are served on GET /metrics, before the ATM has joined its
// group too: then only the request counts are there.
type metrics struct {
	reg      *prometheus.Registry
	requests *prometheus.CounterVec
	app      *fiber.App
	ops      func() map[string]string // first path segment of each route, to itself
}

// mountMetrics counts every request of s and serves /metrics; call it before any route
// is added, so that the counting runs first.
func mountMetrics(s *server) *metrics {
	mt := &metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "quorumq_atm_http_requests_total", Help: "HTTP API requests by operation and status code.",
		}, []string{"op", "code"}),
		app: s.app,
	}
	// The routes are all added by the time the first request arrives.
	mt.ops = sync.OnceValue(func() map[string]string {
		ops := map[string]string{}
		for _, r := range mt.app.GetRoutes(true) {
			op := firstSegment(r.Path)
			ops[op] = op
		}
		return ops
	})
	mt.reg.MustRegister(mt.requests, groupCollector{s})
	s.app.Use(mt.middleware)
	s.app.Get("/metrics", adaptor.HTTPHandler(promhttp.HandlerFor(mt.reg, promhttp.HandlerOpts{})))
	return mt
}

// middleware counts a request under its operation: the first segment of its path when
// that names a route (deposit, balance, ...), else "other". Not the raw path: account
// names would make the label set unbounded. Not the matched route either: a request
// refused by a group middleware (503 while starting) has not reached its route.
func (mt *metrics) middleware(c *fiber.Ctx) error {
	if err := c.Next(); err != nil {
		// Write the failure now, so that its status code is known here.
		if err := c.App().Config().ErrorHandler(c, err); err != nil {
			return err
		}
	}
	// The label is the route's own string: c.Path() is Fiber's reused buffer.
	op, ok := mt.ops()[firstSegment(c.Path())]
	if !ok {
		op = "other"
	}
	mt.requests.WithLabelValues(op, strconv.Itoa(c.Response().StatusCode())).Inc()
	return nil
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

// groupCollector reports the ATM's view of its Raft group and its batcher's histogram
// when scraped, once the ATM exists.
type groupCollector struct{ s *server }

var (
	isLeaderDesc   = prometheus.NewDesc("quorumq_atm_is_leader", "1 while this ATM leads the group.", nil, nil)
	appliedDesc    = prometheus.NewDesc("quorumq_atm_applied_index", "Last Raft index applied to the bank.", nil, nil)
	raftStateDesc  = prometheus.NewDesc("quorumq_atm_raft_state", "1 for the Raft state this member is in.", []string{"state"}, nil)
	termDesc       = prometheus.NewDesc("quorumq_atm_raft_term", "Current Raft term.", nil, nil)
	commitDesc     = prometheus.NewDesc("quorumq_atm_raft_commit_index", "Highest Raft index known committed.", nil, nil)
	lastIndexDesc  = prometheus.NewDesc("quorumq_atm_raft_last_log_index", "Last index in this member's Raft log.", nil, nil)
	batchSizesDesc = prometheus.NewDesc(batchSizesName, batchSizesHelp, nil, nil)
	raftStates     = []raft.RaftState{raft.Follower, raft.Candidate, raft.Leader, raft.Shutdown}
)

func (groupCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{isLeaderDesc, appliedDesc, raftStateDesc, termDesc, commitDesc, lastIndexDesc, batchSizesDesc} {
		ch <- d
	}
}

func (gc groupCollector) Collect(ch chan<- prometheus.Metric) {
	select {
	case <-gc.s.ready:
	default:
		return
	}
	a := gc.s.atm
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	leader := 0.0
	if a.node.IsLeader() {
		leader = 1
	}
	gauge(isLeaderDesc, leader)
	gauge(appliedDesc, float64(a.node.AppliedIndex()))
	a.batch.sizes.Collect(ch)
	// The Raft internals are there only on a real group member (not on test fakes).
	rn, ok := a.node.(interface{ Raft() *raft.Raft })
	if !ok || rn.Raft() == nil {
		return
	}
	r := rn.Raft()
	state := r.State()
	for _, st := range raftStates {
		v := 0.0
		if st == state {
			v = 1
		}
		gauge(raftStateDesc, v, strings.ToLower(st.String()))
	}
	gauge(termDesc, float64(r.CurrentTerm()))
	gauge(commitDesc, float64(r.CommitIndex()))
	gauge(lastIndexDesc, float64(r.LastIndex()))
}
