package manager

import (
	"context"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/quorumq/quorumq/manager/meta"
)

// The managers' metadata writes (POST /topics, /topics/{name}/partitions,
// /producer/register, /consumer/register, DELETE /brokers/{id}) take an
// Idempotency-Key header: the command runs once per key (meta.Keyed), and a retry
// with the same key within meta.KeyRetention (15 minutes) answers the first outcome —
// same status, same body, the header Idempotent-Replayed: true — through write-manager
// changes and restarts, since the key table is replicated state. The same key with
// another request is refused (422, code key_reused). Produce and consume have their
// own retry keys: seq and offset.
const (
	HeaderIdempotencyKey = "Idempotency-Key"
	HeaderReplayed       = "Idempotent-Replayed"
)

// applyWrite applies a client's metadata write, under its Idempotency-Key if it sent
// one. The reply must be built from the result alone, so that a replay answers the
// same body.
func (m *Manager) applyWrite(c *fiber.Ctx, ctx context.Context, cmd meta.Command) (meta.Result, error) {
	key := c.Get(HeaderIdempotencyKey)
	if key == "" {
		return m.apply(ctx, cmd)
	}
	res, err := m.apply(ctx, meta.Keyed{Key: key, At: time.Now().UnixMilli(), Cmd: meta.Encode(cmd)})
	if res.Replayed {
		c.Set(HeaderReplayed, "true")
	}
	return res, err
}
