package clientlib

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strconv"

	"github.com/quorumq/quorumq/manager/managerapi"
)

// ReadAt returns up to max (1–1000) messages of a partition from offset, moving no
// consumer: a replay or a peek. The managers spread these reads over the partition's
// replicas, and a replica that is behind may return fewer messages than the partition
// holds, or none: read again from next to go on. An offset past the end returns no
// messages and no error.
func (c *Client) ReadAt(ctx context.Context, topic string, partition int, offset int64, max int) (msgs []Message, next int64, err error) {
	if offset < 0 || max < 1 {
		return nil, 0, fmt.Errorf("quorumq: ReadAt needs offset >= 0 and max >= 1, got %d and %d", offset, max)
	}
	var r managerapi.MessagesReply
	path := "/topics/" + url.PathEscape(topic) + "/partitions/" + strconv.Itoa(partition) + "/messages"
	q := url.Values{"offset": {strconv.FormatInt(offset, 10)}, "max": {strconv.Itoa(max)}}
	if err := c.do(ctx, call{method: http.MethodGet, path: path, query: q, out: &r}); err != nil {
		return nil, 0, err
	}
	msgs = make([]Message, len(r.Messages))
	for i, v := range r.Messages {
		msgs[i] = Message{Topic: topic, Partition: partition, Offset: int64(r.Offset) + int64(i), Value: v}
	}
	return msgs, int64(r.NextOffset), nil
}
