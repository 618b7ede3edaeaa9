package brokerapi

import (
	"fmt"
	"strconv"
)

// MaxReadAt bounds the messages of one read by offset.
const MaxReadAt = 1000

// ReadAtReply holds the messages [Offset, Next). End is the offset this replica has
// applied up to: a follower may be behind the leader, and End says how far it is.
type ReadAtReply struct {
	Offset   uint64   `json:"offset"`
	Messages []string `json:"messages"`
	Next     uint64   `json:"next_offset"`
	End      uint64   `json:"end"`
}

// ReadAtRawReply is ReadAtReply with each message's exact bytes, base64 in the JSON.
type ReadAtRawReply struct {
	Offset   uint64   `json:"offset"`
	Messages [][]byte `json:"messages"`
	Next     uint64   `json:"next_offset"`
	End      uint64   `json:"end"`
}

// ReadAtRange reads the offset (0 when absent) and max (1 when absent) query values of
// a read by offset, from query (such as fiber.Ctx.Query); the error, for a 400, says
// what is wrong with them. The brokers and the managers serve the same parameters.
func ReadAtRange(query func(key string, def ...string) string) (offset, limit uint64, err error) {
	count := func(name string, def uint64) (uint64, error) {
		v := query(name)
		if v == "" {
			return def, nil
		}
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("query parameter %s must be a non-negative number, got %q", name, v)
		}
		return n, nil
	}
	if offset, err = count("offset", 0); err != nil {
		return 0, 0, err
	}
	if limit, err = count("max", 1); err != nil {
		return 0, 0, err
	}
	if limit < 1 || limit > MaxReadAt {
		return 0, 0, fmt.Errorf("query parameter max must be between 1 and %d, got %d", MaxReadAt, limit)
	}
	return offset, limit, nil
}
