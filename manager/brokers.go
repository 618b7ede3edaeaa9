package manager

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/quorumq/quorumq/manager/meta"
)

// brokerClient speaks the brokers' HTTP API (package broker's api types).
type brokerClient struct {
	http *http.Client
}

func newBrokerClient() *brokerClient {
	return &brokerClient{http: &http.Client{Timeout: 15 * time.Second}}
}

// brokerError is a failure reply of a broker.
type brokerError struct {
	broker string
	status int
	msg    string
	leader string // the partition leader the broker named, when it is not the leader
}

func (e *brokerError) Error() string {
	return fmt.Sprintf("broker %s: %s (HTTP %d)", e.broker, e.msg, e.status)
}

var errNoBroker = fail(http.StatusServiceUnavailable, CodeUnavailable, "no reachable broker holds this partition")

// call sends one JSON request to a broker and decodes its reply into out.
func (bc *brokerClient) call(ctx context.Context, b meta.Broker, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		raw, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(raw)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://"+b.Addr+path, body)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := bc.http.Do(req)
	if err != nil {
		return &brokerError{broker: b.ID, status: http.StatusBadGateway, msg: err.Error()}
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return &brokerError{broker: b.ID, status: http.StatusBadGateway, msg: err.Error()}
	}
	if resp.StatusCode >= 300 {
		var f brokerFailure
		json.Unmarshal(raw, &f)
		if f.Message == "" {
			f.Message = http.StatusText(resp.StatusCode)
		}
		return &brokerError{broker: b.ID, status: resp.StatusCode, msg: f.Message, leader: f.Leader}
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return &brokerError{broker: b.ID, status: http.StatusBadGateway, msg: "bad reply: " + err.Error()}
	}
	return nil
}

// onLeader runs op against the partition's leader: first the broker the metadata
// names, then whoever a broker points to, then the other replicas.
func (bc *brokerClient) onLeader(ctx context.Context, view map[string]meta.Broker, p meta.Partition, op func(b meta.Broker) error) error {
	order := []string{p.Leader}
	for _, r := range p.Replicas {
		if r != p.Leader {
			order = append(order, r)
		}
	}
	tried := map[string]bool{}
	var last error = errNoBroker
	for len(order) > 0 && ctx.Err() == nil {
		id := order[0]
		order = order[1:]
		b, ok := view[id]
		if !ok || tried[id] || b.State == meta.BrokerDead {
			continue
		}
		tried[id] = true
		err := op(b)
		var be *brokerError
		if err == nil || !errors.As(err, &be) {
			return err
		}
		if be.status < 500 && be.status != http.StatusMisdirectedRequest {
			return err // the broker understood and refused: same answer elsewhere
		}
		last = err
		if be.leader != "" && !tried[be.leader] {
			order = append([]string{be.leader}, order...)
		}
	}
	return last
}

func groupPath(p meta.Partition) string { return "/partitions/" + url.PathEscape(p.GroupName()) }

func (bc *brokerClient) produce(ctx context.Context, view map[string]meta.Broker, p meta.Partition,
	producer string, seq *uint64, msgs []string) (uint64, error) {
	var reply brokerProduceReply
	err := bc.onLeader(ctx, view, p, func(b meta.Broker) error {
		return bc.call(ctx, b, http.MethodPost, groupPath(p)+"/produce",
			brokerProduceRequest{Producer: producer, Seq: seq, Messages: msgs}, &reply)
	})
	return reply.Offset, err
}

func (bc *brokerClient) consume(ctx context.Context, view map[string]meta.Broker, p meta.Partition,
	consumer string, expected *uint64, max int) (brokerConsumeReply, error) {
	var reply brokerConsumeReply
	err := bc.onLeader(ctx, view, p, func(b meta.Broker) error {
		return bc.call(ctx, b, http.MethodPost, groupPath(p)+"/consume",
			brokerConsumeRequest{Consumer: consumer, Expected: expected, Max: max}, &reply)
	})
	return reply, err
}

func (bc *brokerClient) size(ctx context.Context, view map[string]meta.Broker, p meta.Partition, consumer string) (uint64, error) {
	var reply brokerSizeReply
	err := bc.onLeader(ctx, view, p, func(b meta.Broker) error {
		return bc.call(ctx, b, http.MethodGet, groupPath(p)+"/size?consumer="+url.QueryEscape(consumer), nil, &reply)
	})
	return reply.Size, err
}

func peersOf(view map[string]meta.Broker, ids []string) []brokerPeer {
	out := make([]brokerPeer, 0, len(ids))
	for _, id := range ids {
		out = append(out, brokerPeer{ID: id, Addr: view[id].RaftAddr})
	}
	return out
}

// createReplica asks broker b to open its replica of p. With join, the replica waits to
// be added to an existing group instead of bootstrapping it with peers.
func (bc *brokerClient) createReplica(ctx context.Context, view map[string]meta.Broker, b meta.Broker, p meta.Partition, join bool) error {
	return bc.call(ctx, b, http.MethodPost, "/partitions", brokerCreateReplicaRequest{
		Group: p.GroupName(), Topic: p.Topic, Partition: p.Index, Peers: peersOf(view, p.Replicas), Join: join,
	}, nil)
}

// addMember adds broker to p's Raft group through a replica (forwarded to its leader).
func (bc *brokerClient) addMember(ctx context.Context, view map[string]meta.Broker, p meta.Partition, nb meta.Broker) error {
	return bc.onLeader(ctx, view, p, func(b meta.Broker) error {
		return bc.call(ctx, b, http.MethodPost, groupPath(p)+"/members", brokerPeer{ID: nb.ID, Addr: nb.RaftAddr}, nil)
	})
}

// removeMember removes broker id from p's Raft group.
func (bc *brokerClient) removeMember(ctx context.Context, view map[string]meta.Broker, p meta.Partition, id string) error {
	return bc.onLeader(ctx, view, p, func(b meta.Broker) error {
		return bc.call(ctx, b, http.MethodDelete, groupPath(p)+"/members/"+url.PathEscape(id), nil, nil)
	})
}

// dropReplica makes b close and delete its replica of group.
func (bc *brokerClient) dropReplica(ctx context.Context, b meta.Broker, group string) error {
	return bc.call(ctx, b, http.MethodDelete, "/partitions/"+url.PathEscape(group), nil, nil)
}

// replicas lists the groups b holds a replica of.
func (bc *brokerClient) replicas(ctx context.Context, b meta.Broker) ([]string, error) {
	var reply brokerReplicasReply
	err := bc.call(ctx, b, http.MethodGet, "/partitions", nil, &reply)
	return reply.Groups, err
}
