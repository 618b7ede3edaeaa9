package manager

import (
	"github.com/gofiber/fiber/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/quorumq/quorumq/internal/raftmetrics"
	"github.com/quorumq/quorumq/manager/meta"
)

// mountMetrics counts the REST API's requests by route pattern (not the raw path: topic
// names would make the label set unbounded) and serves /metrics: the manager's Raft
// state (quorumq_manager_is_leader is 1 on the write manager), the metadata's sizes and
// the brokers' states. Call it before any other route is added.
func (m *Manager) mountMetrics(app *fiber.App, guard fiber.Handler) {
	mt := raftmetrics.New(raftmetrics.Config{
		Prefix: "quorumq_manager",
		Members: raftmetrics.One(func() raftmetrics.Member {
			if n := m.Node(); n != nil {
				return n
			}
			return nil
		}),

		OpLabel: "route",
		Op:      raftmetrics.RoutePattern,
	})
	mt.MustRegister(stateCollector{m}, movesInFlight, movesTotal)
	mt.Mount(app, guard)
}

// movesInFlight is process-wide: only the write manager moves replicas.
var movesInFlight = prometheus.NewGauge(prometheus.GaugeOpts{
	Name: "quorumq_manager_moves_in_flight", Help: "Replica moves (re-replication, decommission) the write manager is carrying out now.",
})

var movesTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
	Name: "quorumq_manager_moves_total", Help: "Replica moves the write manager finished, by result (done, failed).",
}, []string{"result"})

func init() {
	movesTotal.WithLabelValues("done")
	movesTotal.WithLabelValues("failed")
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
