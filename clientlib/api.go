package clientlib

import (
	"bytes"
	"encoding/json"
	"strconv"
)

// The SDK sends managerapi's requests and decodes its replies. Where the seed's managers
// answered in other shapes (ids as strings, the topic inline, messages as objects), the
// SDK decodes through the lenient types below, which read managerapi's replies and the
// seed's alike (api_test.go).

// wireID is an identifier a manager hands out (producer_id, consumer_id). It keeps the raw
// JSON so that it goes back exactly as it came, whether the manager uses numbers or
// strings.
type wireID struct{ raw json.RawMessage }

// parseID turns a printed id (as wireID.String returns it) back into a wireID.
func parseID(s string) wireID {
	if _, err := strconv.ParseInt(s, 10, 64); err == nil {
		return wireID{raw: json.RawMessage(s)}
	}
	b, _ := json.Marshal(s)
	return wireID{raw: b}
}

// String is the id as it appears in a URL query.
func (id wireID) String() string {
	var s string
	if json.Unmarshal(id.raw, &s) == nil {
		return s
	}
	return string(id.raw)
}

// IsZero reports whether the id was never set.
func (id wireID) IsZero() bool { return len(id.raw) == 0 || bytes.Equal(id.raw, []byte("null")) }

func (id wireID) MarshalJSON() ([]byte, error) {
	if id.IsZero() {
		return []byte("null"), nil
	}
	return id.raw, nil
}

func (id *wireID) UnmarshalJSON(b []byte) error {
	id.raw = append(json.RawMessage(nil), b...)
	return nil
}

// listTopicsReply accepts topics as names or as objects with a name.
type listTopicsReply struct {
	Topics []topicName `json:"topics"`
}

type topicName string

func (t *topicName) UnmarshalJSON(b []byte) error {
	var s string
	if json.Unmarshal(b, &s) == nil {
		*t = topicName(s)
		return nil
	}
	var o struct {
		Name string `json:"name"`
	}
	if err := json.Unmarshal(b, &o); err != nil {
		return err
	}
	*t = topicName(o.Name)
	return nil
}

// describeTopicReply accepts the topic inline or under "topic".
type describeTopicReply struct{ TopicInfo }

func (r *describeTopicReply) UnmarshalJSON(b []byte) error {
	var w struct {
		Topic json.RawMessage `json:"topic"`
	}
	if json.Unmarshal(b, &w) == nil && len(w.Topic) > 0 && w.Topic[0] == '{' {
		b = w.Topic
	}
	return json.Unmarshal(b, &r.TopicInfo)
}

type registerReply struct {
	ProducerID wireID `json:"producer_id"`
	ConsumerID wireID `json:"consumer_id"`
	// Offsets, when given, is where a new consumer starts in each partition
	// (partition number as a string key, JSON-style); absent means offset 0 everywhere.
	Offsets map[string]int64 `json:"offsets,omitempty"`
}

// produceRequest is one message ("message") or a batch ("messages") for one partition.
// Seq numbers the producer's requests to this partition (0, 1, 2, ...): a partition
// that already stored the request with this seq answers success with the same offsets
// instead of appending again (broker/partition keeps the last seq per producer).
type produceRequest struct {
	Topic      string   `json:"topic"`
	ProducerID wireID   `json:"producer_id"`
	Partition  *int     `json:"partition,omitempty"`
	Seq        *uint64  `json:"seq,omitempty"`
	Message    *string  `json:"message,omitempty"`
	Messages   []string `json:"messages,omitempty"`
}

// produceReply names where the (first) message landed, when the manager says.
type produceReply struct {
	Partition *int    `json:"partition,omitempty"`
	Offset    *int64  `json:"offset,omitempty"`
	Offsets   []int64 `json:"offsets,omitempty"`
}

// consumeReply is the answer to GET /consumer/consume: one "message" (seed form) or,
// when max was asked, "messages". Partition and offset say where the first one was read.
type consumeReply struct {
	Message   *string       `json:"message,omitempty"`
	Messages  []wireMessage `json:"messages,omitempty"`
	Partition *int          `json:"partition,omitempty"`
	Offset    *int64        `json:"offset,omitempty"`
	// NextOffset is where the consumer continues in that partition.
	NextOffset *int64 `json:"next_offset,omitempty"`
}

// wireMessage is a consumed message, either a bare string or an object.
type wireMessage struct {
	Message   string `json:"message"`
	Partition *int   `json:"partition,omitempty"`
	Offset    *int64 `json:"offset,omitempty"`
}

func (m *wireMessage) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		return json.Unmarshal(b, &m.Message)
	}
	type plain wireMessage
	return json.Unmarshal(b, (*plain)(m))
}
