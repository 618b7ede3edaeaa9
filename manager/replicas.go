package manager

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/quorumq/quorumq/broker/brokerapi"
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

// ensureReplicas makes every alive broker hold the replicas the metadata gives it: a
// write manager that died between placing a partition and creating its replicas left
// them undone. A partition no broker holds yet is bootstrapped; otherwise the missing
// replica joins the existing group.
func (m *Manager) ensureReplicas(ctx context.Context) {
	view := m.brokerView()
	held := map[string]map[string]bool{} // broker → groups
	var mu sync.Mutex
	var alive []meta.Broker
	for _, b := range view {
		if b.State != meta.BrokerDead {
			alive = append(alive, b)
		}
	}
	forEach(alive, func(b meta.Broker) error {
		parts, err := m.brokers.replicas(ctx, b)
		if err != nil {
			return err
		}
		mu.Lock()
		defer mu.Unlock()
		held[b.ID] = map[string]bool{}
		for _, p := range parts {
			held[b.ID][p.GroupName()] = true
		}
		return nil
	})
	var parts []meta.Partition
	m.store.Read(func(s *meta.State) {
		for _, name := range s.TopicNames() {
			parts = append(parts, s.Topics[name].Partitions...)
		}
	})
	for _, p := range parts {
		exists := false
		var missing []string
		for _, id := range p.Replicas {
			h, listed := held[id]
			switch {
			case !listed: // dead or unreachable: the health loop handles it
			case h[p.GroupName()]:
				exists = true
			default:
				missing = append(missing, id)
			}
		}
		for _, id := range missing {
			members := p.Replicas
			if exists {
				members = slices.DeleteFunc(slices.Clone(p.Replicas), func(r string) bool { return r == id })
			}
			if err := m.brokers.createReplica(ctx, view, view[id], p, members); err != nil {
				m.log.Warn("ensure replica", "group", p.GroupName(), "broker", id, "err", err)
			}
		}
	}
}

// moveReplica re-creates the replica of mv.From on mv.To and records the move. A dead
// source leaves the group first, so the group's quorum never counts it; a live one
// (decommission) stays until the new replica is a member.
func (m *Manager) moveReplica(ctx context.Context, mv meta.Move, fromDead bool) (err error) {
	movesInFlight.Inc()
	defer func() {
		movesInFlight.Dec()
		result := "done"
		if err != nil {
			result = "failed"
		}
		movesTotal.WithLabelValues(result).Inc()
	}()
	view := m.brokerView()
	var p meta.Partition
	var ok bool
	m.store.Read(func(s *meta.State) {
		if t, found := s.Topics[mv.Topic]; found && mv.Partition < len(t.Partitions) {
			p, ok = t.Partitions[mv.Partition], t.Partitions[mv.Partition].Has(mv.From)
			p.Replicas = slices.Clone(p.Replicas)
		}
	})
	if !ok {
		return nil // already moved
	}
	to := view[mv.To]
	members := p.Replicas
	if fromDead {
		if err := m.brokers.removeMember(ctx, view, p, mv.From); err != nil {
			return err
		}
		members = slices.DeleteFunc(slices.Clone(p.Replicas), func(r string) bool { return r == mv.From })
	}
	if err := m.brokers.createReplica(ctx, view, to, p, members); err != nil {
		return err
	}
	if err := m.brokers.addMember(ctx, view, p, to); err != nil {
		return err
	}
	if !fromDead {
		if err := m.brokers.removeMember(ctx, view, p, mv.From); err != nil {
			return err
		}
		if err := m.brokers.dropReplica(ctx, view[mv.From], p); err != nil {
			m.log.Warn("drop moved replica", "group", p.GroupName(), "broker", mv.From, "err", err)
		}
	}
	_, err = m.apply(ctx, meta.MoveReplica(mv))
	return err
}

// addReplica creates a further replica of an under-replicated partition on mv.To: it
// joins the group, the group adds it, then the metadata records it.
func (m *Manager) addReplica(ctx context.Context, mv meta.Move) error {
	view := m.brokerView()
	var p meta.Partition
	var ok bool
	m.store.Read(func(s *meta.State) {
		if t, found := s.Topics[mv.Topic]; found && mv.Partition < len(t.Partitions) {
			p, ok = t.Partitions[mv.Partition], !t.Partitions[mv.Partition].Has(mv.To)
			p.Replicas = slices.Clone(p.Replicas)
		}
	})
	if !ok {
		return nil
	}
	if err := m.brokers.createReplica(ctx, view, view[mv.To], p, p.Replicas); err != nil {
		return err
	}
	if err := m.brokers.addMember(ctx, view, p, view[mv.To]); err != nil {
		return err
	}
	_, err := m.apply(ctx, meta.AddReplica{Topic: mv.Topic, Partition: mv.Partition, Broker: mv.To})
	return err
}

// dropStaleReplicas deletes, on a broker that came back, the replicas that were moved
// away while it was dead, and reports whether that is done. It is not while the broker
// is still reopening its replicas after the restart (it lists only those it has
// reopened) or a deletion failed: the health loop calls it again at its next pass. A
// broker that is no longer alive is done with.
func (m *Manager) dropStaleReplicas(ctx context.Context, id string) bool {
	b := m.brokerView()[id]
	if b.State != meta.BrokerAlive {
		return true
	}
	var h brokerapi.HealthReply
	if err := m.brokers.call(ctx, b, http.MethodGet, "/healthz", nil, &h); err != nil || h.Reopening > 0 {
		return false
	}
	parts, err := m.brokers.replicas(ctx, b)
	if err != nil {
		m.log.Warn("list replicas of returning broker", "broker", id, "err", err)
		return false
	}
	keep := map[string]bool{}
	m.store.Read(func(s *meta.State) {
		for _, p := range s.PartitionsOf(id) {
			keep[p.GroupName()] = true
		}
	})
	done := true
	for _, p := range parts {
		if keep[p.GroupName()] {
			continue
		}
		if err := m.brokers.dropReplica(ctx, b, p); err != nil {
			m.log.Warn("drop stale replica", "group", p.GroupName(), "broker", id, "err", err)
			done = false
		}
	}
	return done
}
