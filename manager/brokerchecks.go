package manager

import (
	"context"
	"strconv"

	"github.com/gofiber/fiber/v2"

	"github.com/quorumq/quorumq/manager/managerapi"
	"github.com/quorumq/quorumq/manager/meta"
)

// checkReplication refuses a replication factor the alive brokers cannot meet
// now: its partitions would start under-replicated, and stay so if the
// cluster never has that many brokers (`replication: 1000` was accepted).
// A topic created without one takes the managers' default, which is topped
// up as brokers join instead (a cluster that is still starting).
func (m *Manager) checkReplication(ctx context.Context, topic string, replication int) error {
	alive := 0
	err := m.read(ctx, func(s *meta.State) error {
		for _, b := range s.Brokers {
			if b.State == meta.BrokerAlive {
				alive++
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if replication > alive {
		return badRequest("topic %q needs %d replicas per partition but only %d brokers are alive", topic, replication, alive)
	}
	return nil
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
