package manager

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/quorumq/quorumq/internal/retry"
	"github.com/quorumq/quorumq/manager/meta"
)

// forEach runs fn for every item concurrently and joins the errors.
func forEach[T any](items []T, fn func(T) error) error {
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for _, it := range items {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := fn(it); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// replicaRetry is how long the manager keeps trying to open new replicas. The
// partitions exist once their command is applied, so a create never answers 503 after
// that (a client would retry a create that had worked); it waits up to openWait for its
// replicas, which paces a client creating many topics to what the brokers can open
// (answering at once let 2,000 creates run ahead and left their opens to pile up). A
// produce or consume that arrives before the leader waits for it (leaderWait). The
// write manager's survey (every surveyEvery) creates what is still missing after
// replicaRetry.
const replicaRetry = time.Minute

const settlePoll = 500 * time.Millisecond

// openReplicas opens the replicas of new partitions on their brokers and records the
// leaders they elect, in the background; the channel closes once every replica is
// open. Leaders are not waited for: the placement's leader is named to the brokers,
// which let it stand first, so the recorded one is right unless its election fails.
func (m *Manager) openReplicas(parts []meta.Partition) <-chan struct{} {
	opened := make(chan struct{})
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		ctx, cancel := context.WithTimeout(m.life, replicaRetry)
		defer cancel()
		for wait := 50 * time.Millisecond; ; wait = min(2*wait, 2*time.Second) {
			err := m.createReplicas(ctx, parts)
			if err == nil {
				break
			}
			select {
			case <-ctx.Done():
				m.log.Warn("new replicas not all opened yet; the survey of the brokers creates the missing ones", "err", err)
				return
			case <-time.After(wait):
			}
		}
		close(opened)
		m.settleLeaders(ctx, parts)
	}()
	return opened
}

// createReplicas opens the replicas of new partitions on their brokers; each group
// bootstraps with its full member list, the same on every member.
func (m *Manager) createReplicas(ctx context.Context, parts []meta.Partition) error {
	view := m.brokerView()
	type one struct {
		b meta.Broker
		p meta.Partition
	}
	var all []one
	for _, p := range parts {
		for _, id := range p.Replicas {
			all = append(all, one{view[id], p})
		}
	}
	return forEach(all, func(o one) error { return m.brokers.createReplica(ctx, view, o.b, o.p, o.p.Replicas) })
}

// settleLeaders waits, up to leaderWait, for new partitions to elect their leaders and
// records those that differ from the placement's. It asks each partition every
// settlePoll: a new group takes a second or more to elect, and asking every 100 ms, for
// every partition of every topic being created, put hundreds of calls a second on the
// managers and brokers while 2,000 topics were created.
func (m *Manager) settleLeaders(ctx context.Context, parts []meta.Partition) {
	ctx, cancel := context.WithTimeout(ctx, leaderWait)
	defer cancel()
	view := m.brokerView()
	forEach(parts, func(p meta.Partition) error {
		for ctx.Err() == nil {
			id, err := m.brokers.replicaLeader(ctx, view, p)
			if err == nil && id != "" {
				if id != p.Leader {
					_, err = m.apply(ctx, meta.SetLeader{Topic: p.Topic, Partition: p.Index, Leader: id})
				}
				return err
			}
			retry.Sleep(ctx, settlePoll)
		}
		return ctx.Err()
	})
}
