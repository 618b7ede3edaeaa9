package manager

import (
	"strconv"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/middleware/adaptor"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/quorumq/quorumq/manager/meta"
)

// metrics are the manager's Prometheus series, in a registry of its own (tests run
// several managers in one process).
type metrics struct {
	reg      *prometheus.Registry
	requests *prometheus.CounterVec
}

func newMetrics(m *Manager) *metrics {
	reg := prometheus.NewRegistry()
	mt := &metrics{
		reg: reg,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "quorumq_manager_http_requests_total", Help: "REST API requests by route and status code.",
		}, []string{"method", "route", "code"}),
	}
	leader := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "quorumq_manager_is_write_manager", Help: "1 while this manager leads the managers' Raft group.",
	}, func() float64 {
		if n := m.Node(); n != nil && n.IsLeader() {
			return 1
		}
		return 0
	})
	applied := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "quorumq_manager_applied_index", Help: "Last Raft index applied to the metadata and PostgreSQL.",
	}, func() float64 { return float64(m.store.AppliedIndex()) })
	reg.MustRegister(mt.requests, leader, applied, stateCollector{m})
	return mt
}

// middleware counts every request by its route pattern (not the raw path: topic names
// would make the label set unbounded).
func (mt *metrics) middleware(c *fiber.Ctx) error {
	if err := c.Next(); err != nil {
		// Write the failure now, so that its status code is known here.
		if err := c.App().Config().ErrorHandler(c, err); err != nil {
			return err
		}
	}
	// Prometheus keeps label values for good: none may point into Fiber's reused
	// request buffers. The method comes from a fixed table, the route pattern is the
	// string the route was registered with.
	mt.requests.WithLabelValues(methodLabel(c.Method()), c.Route().Path, strconv.Itoa(c.Response().StatusCode())).Inc()
	return nil
}

var methods = map[string]string{
	fiber.MethodGet: fiber.MethodGet, fiber.MethodHead: fiber.MethodHead, fiber.MethodPost: fiber.MethodPost,
	fiber.MethodPut: fiber.MethodPut, fiber.MethodPatch: fiber.MethodPatch, fiber.MethodDelete: fiber.MethodDelete,
	fiber.MethodOptions: fiber.MethodOptions,
}

// methodLabel is the table's own copy of method, or "other" for a method not in it.
func methodLabel(method string) string {
	if m, ok := methods[method]; ok {
		return m
	}
	return "other"
}

func (mt *metrics) handler() fiber.Handler {
	return adaptor.HTTPHandler(promhttp.HandlerFor(mt.reg, promhttp.HandlerOpts{}))
}

// stateCollector reports the metadata's sizes and broker states when scraped.
type stateCollector struct{ m *Manager }

var (
	topicsDesc     = prometheus.NewDesc("quorumq_topics", "Topics in the metadata.", nil, nil)
	partitionsDesc = prometheus.NewDesc("quorumq_partitions", "Partitions in the metadata.", nil, nil)
	brokersDesc    = prometheus.NewDesc("quorumq_brokers", "Brokers by state.", []string{"state"}, nil)
)

func (stateCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- topicsDesc
	ch <- partitionsDesc
	ch <- brokersDesc
}

func (sc stateCollector) Collect(ch chan<- prometheus.Metric) {
	var topics, parts int
	states := map[meta.BrokerState]int{meta.BrokerAlive: 0, meta.BrokerDead: 0, meta.BrokerDecommissioning: 0, meta.BrokerReleased: 0}
	sc.m.store.Read(func(s *meta.State) {
		topics = len(s.Topics)
		for _, t := range s.Topics {
			parts += len(t.Partitions)
		}
		for _, b := range s.Brokers {
			states[b.State]++
		}
	})
	ch <- prometheus.MustNewConstMetric(topicsDesc, prometheus.GaugeValue, float64(topics))
	ch <- prometheus.MustNewConstMetric(partitionsDesc, prometheus.GaugeValue, float64(parts))
	for st, n := range states {
		ch <- prometheus.MustNewConstMetric(brokersDesc, prometheus.GaugeValue, float64(n), string(st))
	}
}
