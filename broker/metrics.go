package broker

import (
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/gofiber/fiber/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/quorumq/quorumq/broker/internal/wal"
	"github.com/quorumq/quorumq/internal/raftmetrics"
)

// The traffic series are labelled by topic only: partitions and consumers are many, and
// the per-consumer view is the lag gauge, reported only by partition leaders.
var (
	messagesIn = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "quorumq_broker_messages_in_total", Help: "Messages stored by produce requests this broker led, by topic (duplicates not counted).",
	}, []string{"topic"})
	bytesIn = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "quorumq_broker_bytes_in_total", Help: "Message bytes stored by produce requests this broker led, by topic.",
	}, []string{"topic"})
	messagesOut = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "quorumq_broker_messages_out_total", Help: "Messages served to consumers and readers by this broker, by topic.",
	}, []string{"topic"})
	bytesOut = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "quorumq_broker_bytes_out_total", Help: "Message bytes served to consumers and readers by this broker, by topic.",
	}, []string{"topic"})
	commitSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "quorumq_broker_commit_seconds", Help: "Time from handing a group commit to Raft until a majority stored and this leader applied it.",
		Buckets: prometheus.ExponentialBuckets(0.0001, 2, 18), // 100 µs .. 13 s
	})
)

func countIn(topic string, msgs [][]byte) { count(messagesIn, bytesIn, topic, msgs) }

func countOut[M string | []byte](topic string, msgs []M) { count(messagesOut, bytesOut, topic, msgs) }

func count[M string | []byte](n, b *prometheus.CounterVec, topic string, msgs []M) {
	size := 0
	for _, m := range msgs {
		size += len(m)
	}
	n.WithLabelValues(topic).Add(float64(len(msgs)))
	b.WithLabelValues(topic).Add(float64(size))
}

// mountMetrics serves GET /metrics: requests and their latency by route (the produce
// latency histogram is quorumq_broker_http_request_duration_seconds{route="/produce"}),
// traffic by topic, consumer lag, commit and fsync latency, disk use, the number of
// replicas this broker holds, and each replica's Raft state and commit index labelled
// with its group (p/<topic>/<partition>); any token or a cluster certificate reads it.
// Call it before any other route.
func (b *Broker) mountMetrics(app *fiber.App) {
	mt := raftmetrics.New(raftmetrics.Config{
		Prefix:  "quorumq_broker",
		Members: b.members,
		OpLabel: "route",
		Op:      raftmetrics.RoutePattern,
	})
	mt.MustRegister(messagesIn, bytesIn, messagesOut, bytesOut, commitSeconds, wal.FsyncSeconds, brokerCollector{b})
	mt.Mount(app, b.auth.Require("", nil))
}

func (b *Broker) members() []raftmetrics.Member {
	rs := b.allReplicas()
	out := make([]raftmetrics.Member, 0, len(rs))
	for _, r := range rs {
		out = append(out, r.node)
	}
	return out
}

// brokerCollector reports, when scraped, each led partition's consumer lag and the bytes
// the data directory takes on disk.
type brokerCollector struct{ b *Broker }

var (
	lagDesc = prometheus.NewDesc("quorumq_broker_consumer_lag", "Messages left for a consumer of a partition this broker leads.",
		[]string{"topic", "partition", "consumer"}, nil)
	diskDesc = prometheus.NewDesc("quorumq_broker_storage_bytes", "Bytes the broker's data directory takes on disk, by part (wal: Raft logs, data: message bodies, db: bolt files).",
		[]string{"part"}, nil)
)

func (brokerCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- lagDesc
	ch <- diskDesc
}

func (bc brokerCollector) Collect(ch chan<- prometheus.Metric) {
	for _, r := range bc.b.allReplicas() {
		if !r.node.IsLeader() {
			continue
		}
		part := strconv.Itoa(r.part)
		for consumer, lag := range r.fsm.Lags() {
			ch <- prometheus.MustNewConstMetric(lagDesc, prometheus.GaugeValue, float64(lag), r.topic, part, consumer)
		}
	}
	for part, n := range diskUse(bc.b.cfg.DataDir) {
		ch <- prometheus.MustNewConstMetric(diskDesc, prometheus.GaugeValue, float64(n), part)
	}
}

// diskUse sums the allocated blocks (not the apparent sizes: preallocated segments are
// sparse until written) under dir: wal/, data/, and the files at the top (bolt).
func diskUse(dir string) map[string]int64 {
	use := map[string]int64{"wal": 0, "data": 0, "db": 0}
	filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return nil
		}
		st, ok := info.Sys().(*syscall.Stat_t)
		if !ok {
			return nil
		}
		part := "db"
		if rel, err := filepath.Rel(dir, path); err == nil {
			switch first, _, _ := strings.Cut(rel, string(filepath.Separator)); first {
			case "wal", "data":
				part = first
			}
		}
		use[part] += st.Blocks * 512
		return nil
	})
	return use
}
