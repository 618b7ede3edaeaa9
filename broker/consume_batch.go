package broker

import (
	"encoding/binary"
	"strconv"

	"github.com/gofiber/fiber/v2"

	"github.com/quorumq/quorumq/broker/brokerapi"
)

// acceptsBatch reports whether the client asked for brokerapi.MIMEBatch replies.
func acceptsBatch(c *fiber.Ctx) bool {
	return c.Get(fiber.HeaderAccept) == brokerapi.MIMEBatch
}

// successBatch answers a consume with msgs in brokerapi.MIMEBatch.
func successBatch(c *fiber.Ctx, r brokerapi.ConsumeReply, msgs [][]byte) error {
	n := 0
	for _, m := range msgs {
		n += binary.MaxVarintLen32 + len(m)
	}
	c.Set(brokerapi.HeaderOffset, strconv.FormatUint(r.Offset, 10))
	c.Set(brokerapi.HeaderNext, strconv.FormatUint(r.Next, 10))
	c.Set(brokerapi.HeaderLeft, strconv.FormatUint(r.Left, 10))
	c.Set(fiber.HeaderContentType, brokerapi.MIMEBatch)
	c.Response().SetBodyRaw(brokerapi.AppendBatch(make([]byte, 0, n), msgs...))
	return nil
}
