// Package raftmetrics is the Prometheus endpoint of a service that is one member of a
// Raft group behind a Fiber API (an ATM, a manager): a registry of its own (tests run
// several members in one process), the member's Raft state, the API's requests by
// method, operation and status code, all served on GET /metrics.
package raftmetrics

import (
	"strconv"
	"strings"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/middleware/adaptor"
	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Member is what is reported of the group member (an *election.Node is one). When it
// also has a Raft() *raft.Raft, its Raft state, term and indexes are reported as well.
type Member interface {
	IsLeader() bool
	AppliedIndex() uint64
}

// Config names the series and says where their values come from.
type Config struct {
	// Prefix starts every series name, e.g. "quorumq_atm".
	Prefix string
	// Member returns the group member, or nil while the service has not joined its group
	// yet: then only the request counts are reported.
	Member func() Member
	// OpLabel names the label that tells a request's operation apart (e.g. "route"), and
	// Op returns its value: a bounded set (a route pattern, not a path with names in
	// it) of strings that do not point into Fiber's reused buffers (Prometheus keeps
	// every label value), such as RoutePattern's.
	OpLabel string
	Op      func(c *fiber.Ctx) string
}

// Metrics counts a Fiber app's requests and serves the registry.
type Metrics struct {
	cfg      Config
	reg      *prometheus.Registry
	requests *prometheus.CounterVec
}

// New registers the request counter and the Raft state of cfg.Member.
func New(cfg Config) *Metrics {
	m := &Metrics{
		cfg: cfg,
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: cfg.Prefix + "_http_requests_total", Help: "HTTP API requests by method, operation and status code.",
		}, []string{"method", cfg.OpLabel, "code"}),
	}
	m.reg.MustRegister(m.requests, newRaftCollector(cfg.Prefix, cfg.Member))
	return m
}

// MustRegister adds the service's own collectors.
func (m *Metrics) MustRegister(cs ...prometheus.Collector) { m.reg.MustRegister(cs...) }

// Mount counts every request of app and serves GET /metrics on it. Call it before any
// other route is added, so that the counting runs first.
func (m *Metrics) Mount(app *fiber.App) {
	app.Use(m.count)
	app.Get("/metrics", adaptor.HTTPHandler(promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})))
}

func (m *Metrics) count(c *fiber.Ctx) error {
	if err := c.Next(); err != nil {
		// Write the failure now, so that its status code is known here.
		if err := c.App().Config().ErrorHandler(c, err); err != nil {
			return err
		}
	}
	m.requests.WithLabelValues(methodLabel(c.Method()), m.cfg.Op(c), strconv.Itoa(c.Response().StatusCode())).Inc()
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

// raftCollector reports the member's view of its group when scraped.
type raftCollector struct {
	member                                       func() Member
	isLeader, applied, state, term, commit, last *prometheus.Desc
}

var raftStates = []raft.RaftState{raft.Follower, raft.Candidate, raft.Leader, raft.Shutdown}

func newRaftCollector(prefix string, member func() Member) raftCollector {
	desc := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(prefix+"_"+name, help, labels, nil)
	}
	return raftCollector{
		member:   member,
		isLeader: desc("is_leader", "1 while this member leads its Raft group."),
		applied:  desc("applied_index", "Last Raft index applied to this member's state."),
		state:    desc("raft_state", "1 for the Raft state this member is in.", "state"),
		term:     desc("raft_term", "Current Raft term."),
		commit:   desc("raft_commit_index", "Highest Raft index known committed."),
		last:     desc("raft_last_log_index", "Last index in this member's Raft log."),
	}
}

func (rc raftCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{rc.isLeader, rc.applied, rc.state, rc.term, rc.commit, rc.last} {
		ch <- d
	}
}

func (rc raftCollector) Collect(ch chan<- prometheus.Metric) {
	mb := rc.member()
	if mb == nil {
		return
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
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
