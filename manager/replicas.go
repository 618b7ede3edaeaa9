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
// Until the replicas are open the survey leaves their groups alone: listing a broker
// in the middle, it took a replica not open yet for one lost, and had it join the
// group through its peers (a wait for a leader) instead of bootstrapping with them.
func (m *Manager) openReplicas(parts []meta.Partition) <-chan struct{} {
	opened := make(chan struct{})
	m.markCreating(parts, 1)
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		ctx, cancel := context.WithTimeout(m.life, replicaRetry)
		defer cancel()
		err := m.createReplicas(ctx, parts)
		m.markCreating(parts, -1)
		if err != nil {
			m.log.Warn("new replicas not all opened yet; the survey of the brokers creates the missing ones", "err", err)
			return
		}
		close(opened)
		m.settleLeaders(ctx, parts)
	}()
	return opened
}

// markCreating counts an openReplicas of parts in (by 1) or out (by -1), and forgets
// the creations that ended longer ago than any survey lasts.
func (m *Manager) markCreating(parts []meta.Partition, by int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.creating == nil {
		m.creating, m.created = map[string]int{}, map[string]time.Time{}
	}
	now := time.Now()
	for g, at := range m.created {
		if now.Sub(at) > replicaRetry {
			delete(m.created, g)
		}
	}
	for _, p := range parts {
		g := p.GroupName()
		if m.creating[g] += by; m.creating[g] <= 0 {
			delete(m.creating, g)
			m.created[g] = now
		}
	}
}

// beingCreated returns the groups whose replicas openReplicas is opening, or was
// opening since.
func (m *Manager) beingCreated(since time.Time) map[string]bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[string]bool, len(m.creating))
	for g := range m.creating {
		out[g] = true
	}
	for g, at := range m.created {
		if at.After(since) {
			out[g] = true
		}
	}
	return out
}

// createReplicas opens the replicas of new partitions on their brokers, each group
// with its full member list, the same on every member, retrying those that fail until
// ctx ends. The first attempts call the groups new (brokerapi.CreateReplicaRequest.New):
// its members bootstrap at once. A retry may find a group that has run meanwhile (a
// member that failed at first, opened later), so it lets the broker ask its peers.
func (m *Manager) createReplicas(ctx context.Context, parts []meta.Partition) error {
	type one struct {
		broker string
		p      meta.Partition
	}
	var left []one
	for _, p := range parts {
		for _, id := range p.Replicas {
			left = append(left, one{id, p})
		}
	}
	for wait, first := 50*time.Millisecond, true; ; wait, first = min(2*wait, 2*time.Second), false {
		view := m.brokerView() // a broker restarted meanwhile may listen elsewhere
		var mu sync.Mutex
		var failed []one
		err := forEach(left, func(o one) error {
			var err error
			if first {
				err = m.brokers.newReplica(ctx, view, view[o.broker], o.p)
			} else {
				err = m.brokers.createReplica(ctx, view, view[o.broker], o.p, o.p.Replicas)
			}
			if err != nil {
				mu.Lock()
				failed = append(failed, o)
				mu.Unlock()
			}
			return err
		})
		if err == nil {
			return nil
		}
		left = failed
		select {
		case <-ctx.Done():
			return err
		case <-time.After(wait):
		}
	}
}

// settleLeaders waits, up to leaderWait, for new partitions to elect their leaders and
// records those that differ from the placement's. It asks each partition every
// settlePoll, the first time after one: asking every 100 ms, for every partition of
// every topic being created, put hundreds of calls a second on the managers and brokers
// while 2,000 topics were created, and asking at once, before the group's first votes
// were cast, made a third of the 15,000 asks of a 2,000-topic run.
func (m *Manager) settleLeaders(ctx context.Context, parts []meta.Partition) {
	ctx, cancel := context.WithTimeout(ctx, leaderWait)
	defer cancel()
	view := m.brokerView()
	forEach(parts, func(p meta.Partition) error {
		for retry.Sleep(ctx, settlePoll) == nil {
			id, err := m.brokers.replicaLeader(ctx, view, p)
			if err == nil && id != "" {
				if id != p.Leader {
					_, err = m.apply(ctx, meta.SetLeader{Topic: p.Topic, Partition: p.Index, Leader: id})
				}
				return err
			}
		}
		return ctx.Err()
	})
}
