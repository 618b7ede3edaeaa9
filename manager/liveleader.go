package manager

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/quorumq/quorumq/broker/brokerapi"
	"github.com/quorumq/quorumq/manager/managerapi"
	"github.com/quorumq/quorumq/manager/meta"
)

// The metadata's partition leader trails an election by the seconds the write manager
// takes to notice a dead broker (its health check, then BrokerGrace) or routing takes
// to record the new one. GET /topics/{name}?live=true asks the replicas instead.
const (
	// liveLeaderWait bounds the whole live view: a replica that does not answer by
	// then counts as silent.
	liveLeaderWait = time.Second
	// liveLeaderCalls bounds the status requests in flight for one describe.
	liveLeaderCalls = 32
)

// gone reports whether the managers hold broker id unable to lead: dead, released,
// or unknown.
func gone(view map[string]meta.Broker, id string) bool {
	b, ok := view[id]
	return !ok || b.State == meta.BrokerDead || b.State == meta.BrokerReleased
}

// recordedLeaders is the metadata's view without brokers the managers hold dead.
func recordedLeaders(info *managerapi.TopicInfo, view map[string]meta.Broker) {
	for i := range info.Partitions {
		if p := &info.Partitions[i]; gone(view, p.Leader) {
			p.Leader = ""
		}
	}
}

// liveLeaders sets each partition's leader to the replica that says it leads. Without
// such an answer it takes the leader the answering replicas name, unless that broker
// refused the connection; with no answer at all it keeps the recorded one. A broker
// the managers hold dead is never shown as leader.
func (m *Manager) liveLeaders(ctx context.Context, t meta.Topic, info *managerapi.TopicInfo, view map[string]meta.Broker) {
	ctx, cancel := context.WithTimeout(ctx, liveLeaderWait)
	defer cancel()
	sem := make(chan struct{}, liveLeaderCalls)
	var wg sync.WaitGroup
	for i, p := range t.Partitions {
		answers := make([]replicaAnswer, len(p.Replicas))
		var pwg sync.WaitGroup
		for j, id := range p.Replicas {
			if gone(view, id) {
				continue
			}
			pwg.Add(1)
			go func() {
				defer pwg.Done()
				sem <- struct{}{}
				defer func() { <-sem }()
				var st brokerapi.ReplicaStatus
				err := m.brokers.call(ctx, view[id], http.MethodGet, replicaPath(p), nil, &st)
				var be *brokerError
				switch {
				case err == nil:
					answers[j] = replicaAnswer{id: id, status: &st}
				case errors.As(err, &be) && be.unreachable:
					answers[j] = replicaAnswer{id: id, down: true}
				}
			}()
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			pwg.Wait()
			if l, ok := leaderOf(answers); ok {
				info.Partitions[i].Leader = l
			}
		}()
	}
	wg.Wait()
	recordedLeaders(info, view)
}

// replicaAnswer is what one replica said: its status, or that its broker refused
// the connection (down), or nothing (zero value).
type replicaAnswer struct {
	id     string
	status *brokerapi.ReplicaStatus
	down   bool
}

// leaderOf picks the leader from the replicas' answers; ok is false when none answered.
func leaderOf(answers []replicaAnswer) (string, bool) {
	answered, named := false, ""
	for _, a := range answers {
		if a.status == nil {
			continue
		}
		answered = true
		if a.status.IsLeader {
			return a.id, true
		}
		if named == "" {
			named = a.status.Leader.ID
		}
	}
	// A follower names its old leader until its election timeout passes: a leader
	// that refused the connection is not believed. One that answered would have said
	// it leads.
	for _, a := range answers {
		if a.id == named && (a.down || a.status != nil) {
			return "", answered
		}
	}
	return named, answered
}
