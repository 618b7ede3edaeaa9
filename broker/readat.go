package broker

import (
	"net/http"

	"github.com/gofiber/fiber/v2"

	"github.com/quorumq/quorumq/broker/brokerapi"
)

//	GET /replicas/{topic}/{partition}/messages?offset=N&max=M[&encoding=base64]
//	  → ReadAtReply (ReadAtRawReply with encoding=base64)
//
// reads messages by offset without moving any consumer (replay, peek), on any replica.
// A JSON string cannot carry bytes that are not UTF-8 (they come out as U+FFFD), so a
// reader that needs the exact bytes (another replica repairing a damaged body, see
// repair.go) asks for base64.

// readChunk is how many messages readAt takes from the store at a time, so that the
// byte limit stops it after at most one chunk too many.
const readChunk = 32

// readAt answers from this replica's store without a read barrier, follower or leader:
// a replica applies only committed entries, and committed messages never change, so
// every offset it returns holds exactly the bytes any other replica would return. A
// replica that is behind returns fewer messages (none when offset is past its End)
// than the leader would; a caller that needs everything up to the latest write asks
// again, or asks the leader.
func (b *Broker) readAt(c *fiber.Ctx) error {
	r, err := b.pathReplica(c)
	if err != nil {
		return err
	}
	offset, limit, err := brokerapi.ReadAtRange(c.Query)
	if err != nil {
		return failf(http.StatusBadRequest, "%v", err)
	}
	raw := false
	switch enc := c.Query("encoding"); enc {
	case "":
	case "base64":
		raw = true
	default:
		return failf(http.StatusBadRequest, "query parameter encoding must be base64 or absent, got %q", enc)
	}
	_, end, _, _ := r.fsm.Info()
	out := brokerapi.ReadAtRawReply{Offset: offset, Messages: [][]byte{}, Next: offset, End: end}
	maxBytes := max(maxConsumeBytes, b.cfg.MaxMessageBytes)
	size := 0
fill:
	for out.Next < end && uint64(len(out.Messages)) < limit && size < maxBytes {
		n := min(end-out.Next, limit-uint64(len(out.Messages)), readChunk)
		msgs, err := r.fsm.Messages(out.Next, uint32(n))
		if err != nil {
			return b.explain(r.group, err)
		}
		for _, m := range msgs {
			if len(out.Messages) > 0 && size+len(m) > maxBytes {
				break fill
			}
			out.Messages = append(out.Messages, m)
			size += len(m)
			out.Next++
		}
	}
	countOut(r.topic, out.Messages)
	if raw {
		return success(c, out)
	}
	text := brokerapi.ReadAtReply{Offset: out.Offset, Messages: make([]string, len(out.Messages)), Next: out.Next, End: out.End}
	for i, m := range out.Messages {
		text.Messages[i] = string(m)
	}
	return success(c, text)
}
