package clientlib

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"time"

	"github.com/quorumq/quorumq/manager/managerapi"
)

// Admin creates and inspects topics.
type Admin struct{ c *Client }

// Admin returns the topic administration calls of c.
func (c *Client) Admin() *Admin { return &Admin{c: c} }

// TopicInfo describes a topic and where its partitions live.
type TopicInfo struct {
	Name       string          `json:"name"`
	Partitions []PartitionInfo `json:"partitions"`
	// Retention is what each partition keeps (zero: no limit).
	Retention Retention `json:"-"`
}

// Retention bounds what each partition of a topic keeps: its oldest messages are
// deleted once older than Time, or once the partition holds more than Bytes bytes
// without them. Zero is no limit. Consumers that had not read the deleted messages go
// on from the earliest one kept; a read by offset below it fails with ErrOffsetGone.
type Retention struct {
	Time  time.Duration
	Bytes int64
}

// PartitionInfo is one partition: its replicas (broker ids) and the current leader.
type PartitionInfo struct {
	ID       int      `json:"id"`
	Leader   string   `json:"leader,omitempty"`
	Replicas []string `json:"replicas,omitempty"`
}

// topicInfo is the SDK's TopicInfo of the managers' description: the SDK keeps its own
// public types, whose field names and units (ID, Retention as a time.Duration) its
// users already rely on.
func topicInfo(t managerapi.TopicInfo) TopicInfo {
	info := TopicInfo{Name: t.Name, Partitions: make([]PartitionInfo, len(t.Partitions)),
		Retention: Retention{Time: time.Duration(t.RetentionMs) * time.Millisecond, Bytes: t.RetentionBytes}}
	for i, p := range t.Partitions {
		info.Partitions[i] = PartitionInfo{ID: p.Partition, Leader: p.Leader, Replicas: p.Replicas}
	}
	return info
}

// CreateTopic creates a topic with the given number of partitions (0: the managers'
// default) and, optionally, a retention. It fails with ErrTopicExists when the name is
// taken.
func (a *Admin) CreateTopic(ctx context.Context, name string, partitions int, retention ...Retention) error {
	req := managerapi.CreateTopicRequest{Name: name, Partitions: partitions}
	for _, r := range retention {
		req.RetentionMs, req.RetentionBytes = r.Time.Milliseconds(), r.Bytes
	}
	var retried bool
	cl := metadataWrite(http.MethodPost, "/topics", req, nil)
	cl.retried = &retried
	err := a.c.do(ctx, cl)
	if retried && errors.Is(err, ErrTopicExists) {
		// An earlier attempt may have created it and lost its reply (the write manager
		// died answering), and a manager without Idempotency-Key (the seed's) does not
		// recognise the retry: a topic of the asked shape is taken as that success.
		if info, derr := a.DescribeTopic(ctx, name); derr == nil && (partitions == 0 || len(info.Partitions) == partitions) {
			return nil
		}
	}
	return err
}

// ListTopics returns the names of all topics.
func (a *Admin) ListTopics(ctx context.Context) ([]string, error) {
	var r managerapi.TopicsReply
	if err := a.c.do(ctx, call{method: http.MethodGet, path: "/topics", out: &r}); err != nil {
		return nil, err
	}
	if r.Topics == nil {
		return []string{}, nil
	}
	return r.Topics, nil
}

// DescribeTopic returns a topic's partitions, replicas and leaders, or ErrUnknownTopic.
func (a *Admin) DescribeTopic(ctx context.Context, name string) (TopicInfo, error) {
	return a.describe(ctx, name, nil)
}

// DescribeTopicLive is DescribeTopic with each partition's leader as its replicas
// report it right now, where DescribeTopic gives the managers' record, which trails
// an election by the seconds they take to notice. It costs the managers a request to
// every replica; Leader is empty for a partition that has no leader right now.
func (a *Admin) DescribeTopicLive(ctx context.Context, name string) (TopicInfo, error) {
	return a.describe(ctx, name, url.Values{"live": {"true"}})
}

func (a *Admin) describe(ctx context.Context, name string, q url.Values) (TopicInfo, error) {
	var r managerapi.TopicReply
	if err := a.c.do(ctx, call{method: http.MethodGet, path: "/topics/" + url.PathEscape(name), query: q, out: &r}); err != nil {
		return TopicInfo{}, err
	}
	info := topicInfo(r.Topic)
	if info.Name == "" {
		info.Name = name
	}
	return info, nil
}

// AddPartitions grows a topic by count partitions.
func (a *Admin) AddPartitions(ctx context.Context, topic string, count int) error {
	return a.c.do(ctx, metadataWrite(http.MethodPost, "/topics/"+url.PathEscape(topic)+"/partitions",
		managerapi.AddPartitionsRequest{Count: count}, nil))
}

// Brokers lists the brokers in id order. MovesBy names the write manager that counted
// the moves, "" when a read manager answered (its counts besides Pending are zero).
func (a *Admin) Brokers(ctx context.Context) (brokers []managerapi.BrokerInfo, movesBy string, err error) {
	var r managerapi.BrokersReply
	if err := a.c.do(ctx, call{method: http.MethodGet, path: "/brokers", out: &r}); err != nil {
		return nil, "", err
	}
	return r.Brokers, r.MovesBy, nil
}

// Decommission starts moving every replica off broker id; once it holds none the
// managers release it. It returns at once: Brokers shows the progress.
func (a *Admin) Decommission(ctx context.Context, id string) error {
	return a.c.do(ctx, metadataWrite(http.MethodDelete, "/brokers/"+url.PathEscape(id), nil, nil))
}

// CancelDecommission takes a decommissioning broker back: it keeps the replicas it
// still holds, and the balance gives it more again.
func (a *Admin) CancelDecommission(ctx context.Context, id string) error {
	return a.c.do(ctx, metadataWrite(http.MethodPost, "/brokers/"+url.PathEscape(id)+"/cancel-decommission", nil, nil))
}
