package manager

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/quorumq/quorumq/manager/managerapi"
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
	err := forEach(all, func(o one) error { return m.brokers.createReplica(ctx, view, o.b, o.p, o.p.Replicas) })
	if err != nil {
		return fail(http.StatusServiceUnavailable, managerapi.CodeUnavailable,
			"placed in the metadata, but not every broker opened its replica yet (the write manager retries): %v", err)
	}
	return nil
}

// settleLeaders waits, up to leaderWait, for new partitions to elect their leaders and
// records them, so that the topic is usable and shows its real leaders when the
// request that created it returns.
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
			time.Sleep(50 * time.Millisecond)
		}
		return ctx.Err()
	})
}
