// Package raftmetrics is the Prometheus endpoint of a service whose process is a member
// of one Raft group (an ATM, a manager) or of many (a broker, one group per partition),
// behind a Fiber API: a registry of its own (tests run several members in one process),
// each member's Raft state labelled by group, the API's requests by method, operation
// and status code and their latency, storage faults, leadership changes, and the Go
// runtime's and the process's own series (go_*, process_*), all served on GET /metrics.
package raftmetrics

import (
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/middleware/adaptor"
	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/quorumq/quorumq/election"
)

// Member is what is reported of a group member (an *election.Node is one). When it
// also has a Raft() *raft.Raft, its Raft state, term and indexes are reported as well,
// and a Group() string names the "group" label of its series.
type Member interface {
	IsLeader() bool
	AppliedIndex() uint64
}

// Config names the series and says where their values come from.
type Config struct {
	// Prefix starts every series name, e.g. "quorumq_atm".
	Prefix string
	// Members returns the process's group members: none while the service has not
	// joined its group yet, then only the request metrics are reported.
	Members func() []Member
	// OpLabel names the label that tells a request's operation apart (e.g. "route"), and
	// Op returns its value: a bounded set (a route pattern, not a path with names in
	// it) of strings that do not point into Fiber's reused buffers (Prometheus keeps
	// every label value), such as RoutePattern's.
	OpLabel string
	Op      func(c *fiber.Ctx) string
}

// One adapts a service with a single group member, which member returns (nil until the
// service has joined its group).
func One(member func() Member) func() []Member {
	return func() []Member {
		if mb := member(); mb != nil {
			return []Member{mb}
		}
		return nil
	}
}

// Metrics counts a Fiber app's requests and serves the registry.
type Metrics struct {
	cfg      Config
	reg      *prometheus.Registry
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
}

// New registers the request counter and the Raft state of cfg.Member.
func New(cfg Config) *Metrics {
	m := &Metrics{
		cfg: cfg,
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: cfg.Prefix + "_http_requests_total", Help: "HTTP API requests by method, operation and status code.",
		}, []string{"method", cfg.OpLabel, "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: cfg.Prefix + "_http_request_duration_seconds", Help: "HTTP API request latency by method and operation (produce latency on a broker).",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 18), // 100 µs .. 13 s
		}, []string{"method", cfg.OpLabel}),
	}
	m.reg.MustRegister(m.requests, m.latency, newRaftCollector(cfg.Prefix, cfg.Members), election.StorageFaults,
		election.LeadershipChanges, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// MustRegister adds the service's own collectors.
func (m *Metrics) MustRegister(cs ...prometheus.Collector) { m.reg.MustRegister(cs...) }

// Mount counts every request of app and serves GET /metrics on it, behind guard (the
// process's authorization). Call it before any other route is added, so that the
// counting runs first.
func (m *Metrics) Mount(app *fiber.App, guard fiber.Handler) {
	app.Use(m.count)
	app.Get("/metrics", guard, adaptor.HTTPHandler(promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})))
}

func (m *Metrics) count(c *fiber.Ctx) error {
	start := time.Now()
	if err := c.Next(); err != nil {
		// Write the failure now, so that its status code is known here.
		if err := c.App().Config().ErrorHandler(c, err); err != nil {
			return err
		}
	}
	method, op := methodLabel(c.Method()), m.cfg.Op(c)
	m.requests.WithLabelValues(method, op, strconv.Itoa(c.Response().StatusCode())).Inc()
	m.latency.WithLabelValues(method, op).Observe(time.Since(start).Seconds())
	return nil
}

// RoutePattern is the pattern of the route that answered (/topics/:name), the string
// the route was registered with.
func RoutePattern(c *fiber.Ctx) string { return c.Route().Path }

// methods holds the label values of the methods: c.Method() may point into Fiber's
// buffers.
var methods = map[string]string{
	fiber.MethodGet: fiber.MethodGet, fiber.MethodHead: fiber.MethodHead, fiber.MethodPost: fiber.MethodPost,
	fiber.MethodPut: fiber.MethodPut, fiber.MethodPatch: fiber.MethodPatch, fiber.MethodDelete: fiber.MethodDelete,
	fiber.MethodOptions: fiber.MethodOptions,
}

func methodLabel(method string) string {
	if m, ok := methods[method]; ok {
		return m
	}
	return "other"
}

// raftCollector reports each member's view of its group when scraped.
type raftCollector struct {
	members                                              func() []Member
	groups, isLeader, applied, state, term, commit, last *prometheus.Desc
}

var raftStates = []raft.RaftState{raft.Follower, raft.Candidate, raft.Leader, raft.Shutdown}

func newRaftCollector(prefix string, members func() []Member) raftCollector {
	desc := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(prefix+"_"+name, help, append([]string{"group"}, labels...), nil)
	}
	return raftCollector{
		members:  members,
		groups:   prometheus.NewDesc(prefix+"_raft_groups", "Raft groups this process is a member of (replicas, on a broker).", nil, nil),
		isLeader: desc("is_leader", "1 while this member leads its Raft group."),
		applied:  desc("applied_index", "Last Raft index applied to this member's state."),
		state:    desc("raft_state", "1 for the Raft state this member is in.", "state"),
		term:     desc("raft_term", "Current Raft term."),
		commit:   desc("raft_commit_index", "Highest Raft index known committed."),
		last:     desc("raft_last_log_index", "Last index in this member's Raft log."),
	}
}

func (rc raftCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{rc.groups, rc.isLeader, rc.applied, rc.state, rc.term, rc.commit, rc.last} {
		ch <- d
	}
}

func (rc raftCollector) Collect(ch chan<- prometheus.Metric) {
	members := rc.members()
	ch <- prometheus.MustNewConstMetric(rc.groups, prometheus.GaugeValue, float64(len(members)))
	for _, mb := range members {
		rc.collect(ch, mb)
	}
}

func (rc raftCollector) collect(ch chan<- prometheus.Metric, mb Member) {
	group := ""
	if g, ok := mb.(interface{ Group() string }); ok {
		group = g.Group()
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, append([]string{group}, labels...)...)
	}
	gauge(rc.isLeader, boolValue(mb.IsLeader()))
	gauge(rc.applied, float64(mb.AppliedIndex()))
	rm, ok := mb.(interface{ Raft() *raft.Raft })
	if !ok || rm.Raft() == nil {
		return
	}
	r := rm.Raft()
	state := r.State()
	for _, st := range raftStates {
		gauge(rc.state, boolValue(st == state), strings.ToLower(st.String()))
	}
	gauge(rc.term, float64(r.CurrentTerm()))
	gauge(rc.commit, float64(r.CommitIndex()))
	gauge(rc.last, float64(r.LastIndex()))
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
