package manager

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/quorumq/quorumq/internal/retry"
	"github.com/quorumq/quorumq/manager/managerapi"
	"github.com/quorumq/quorumq/manager/meta"
)

// checkReplication refuses a replication factor the alive brokers cannot meet
// now: its partitions would start under-replicated, and stay so if the
// cluster never has that many brokers (`replication: 1000` was accepted).
// A topic created without one takes the managers' default, which is topped
// up as brokers join instead (a cluster that is still starting).
func (m *Manager) checkReplication(ctx context.Context, topic string, replication int) error {
	alive, err := m.aliveBrokers(ctx)
	if err != nil {
		return err
	}
	if replication > alive {
		return badRequest("topic %q needs %d replicas per partition but only %d brokers are alive", topic, replication, alive)
	}
	return nil
}

func (m *Manager) aliveBrokers(ctx context.Context) (int, error) {
	alive := 0
	err := m.read(ctx, func(s *meta.State) error {
		for _, b := range s.Brokers {
			if b.State == meta.BrokerAlive {
				alive++
			}
		}
		return nil
	})
	return alive, err
}

// brokerWait is how long a create with the default replication waits for that many
// brokers to be alive. The write manager learns of brokers one by one as a cluster
// starts: a topic created the moment the managers answered got one replica per
// partition, all on the first broker known, and the planner adds the others one move
// at a time, seconds apart per partition, so that losing that broker meanwhile left
// every partition without a leader. A cluster that stays short of brokers still gets
// its topic after the wait, under-replicated until brokers come (and the reply says
// so).
var brokerWait = 5 * time.Second

// awaitBrokers waits up to brokerWait until n brokers are alive.
func (m *Manager) awaitBrokers(ctx context.Context, n int) {
	ctx, cancel := context.WithTimeout(ctx, brokerWait)
	defer cancel()
	for {
		if alive, err := m.aliveBrokers(ctx); err != nil || alive >= n || retry.Sleep(ctx, 100*time.Millisecond) != nil {
			return
		}
	}
}

// underReplicated says, for a create's reply, how many of their replicas the
// partitions of t have when some have fewer than t.Replication ("" when none).
func underReplicated(t meta.Topic) string {
	fewest := t.Replication
	for _, p := range t.Partitions {
		fewest = min(fewest, len(p.Replicas))
	}
	if fewest >= t.Replication {
		return ""
	}
	return fmt.Sprintf("; too few brokers are alive for %d replicas per partition, so some partitions have only %d for now: the others are added as brokers join", t.Replication, fewest)
}

// cancelDecommission takes a decommissioning broker back (POST
// /brokers/{id}/cancel-decommission): it is alive again, keeps the replicas
// it still holds and gets new ones; replicas already moved away stay moved.
func (m *Manager) cancelDecommission(c *fiber.Ctx) error {
	ctx, cancel := reqCtx(c)
	defer cancel()
	id := c.Params("id")
	if _, err := m.apply(ctx, meta.CancelDecommission{ID: id}); err != nil {
		return err
	}
	return c.JSON(managerapi.MessageReply{Reply: managerapi.Success, Message: "decommission of broker " + strconv.Quote(id) + " cancelled: it is alive and keeps the replicas it still holds"})
}
