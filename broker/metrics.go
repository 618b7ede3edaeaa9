package broker

import (
	"github.com/gofiber/fiber/v2"

	"github.com/quorumq/quorumq/election/raftmetrics"
)

// mountMetrics serves GET /metrics: requests and their latency by route (the produce
// latency histogram is quorumq_broker_http_request_duration_seconds{route="/produce"}),
// the number of replicas this broker holds, and each replica's Raft state and commit
// index labelled with its group (p/<topic>/<partition>); any token or a cluster
// certificate reads it. Call it before any other route.
func (b *Broker) mountMetrics(app *fiber.App) {
	raftmetrics.New(raftmetrics.Config{
		Prefix:  "quorumq_broker",
		Members: b.members,
		OpLabel: "route",
		Op:      raftmetrics.RoutePattern,
	}).Mount(app, b.auth.Require("", nil))
}

func (b *Broker) members() []raftmetrics.Member {
	rs := b.allReplicas()
	out := make([]raftmetrics.Member, 0, len(rs))
	for _, r := range rs {
		out = append(out, r.node)
	}
	return out
}
