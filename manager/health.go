package manager

import (
	"context"
	"time"

	"github.com/quorumq/quorumq/discovery"
	"github.com/quorumq/quorumq/manager/meta"
)

// reconcileEvery is how often the write manager looks for work even when nothing in
// discovery changed (a failed move is retried, a decommission proceeds).
const reconcileEvery = time.Second

// ensureEvery is how often the write manager checks that every alive broker holds the
// replicas the metadata gives it (one listing per broker).
const ensureEvery = 10 * time.Second

// kickHealth asks the write manager's loop (if it runs here) to reconcile now.
func (m *Manager) kickHealth() {
	select {
	case m.kick <- struct{}{}:
	default:
	}
}

// watchBrokers is the write manager's health loop: it follows quorumq-broker in
// discovery, records brokers that come up, declares dead those critical (or gone) for
// longer than the grace period, and moves replicas off dead and decommissioning brokers.
// A broker that registers or passes its health check again hears from ann who the
// write manager is (it may have restarted and forgotten), and so does every alive
// broker at each ensure round, in case a restart went unnoticed by discovery.
func (m *Manager) watchBrokers(ctx context.Context, ann *announcer) {
	updates, err := m.cfg.Discovery.Watch(ctx, discovery.ServiceBroker)
	if err != nil {
		m.log.Error("watch brokers", "err", err)
		return
	}
	badSince := map[string]time.Time{}   // brokers not passing, since when
	returning := map[string]bool{}       // brokers back from the dead, their stale replicas not dropped yet
	var seen map[string]discovery.Member // nil until discovery has answered once
	tick := time.NewTicker(reconcileEvery / 2)
	defer tick.Stop()
	ensure := time.NewTicker(ensureEvery)
	defer ensure.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ensure.C:
			ann.toAlive()
			m.ensureReplicas(ctx)
		case members, ok := <-updates:
			if !ok {
				return
			}
			now := time.Now()
			current := map[string]discovery.Member{}
			for _, mb := range members {
				current[mb.ID] = mb
				if mb.Health == discovery.Passing {
					if prev, ok := seen[mb.ID]; !ok || prev.Health != discovery.Passing {
						ann.to(mb.ID, mb.Addr)
					}
					delete(badSince, mb.ID)
				} else if _, ok := badSince[mb.ID]; !ok {
					badSince[mb.ID] = now
				}
			}
			for id := range seen {
				if _, ok := current[id]; !ok {
					if _, bad := badSince[id]; !bad {
						badSince[id] = now // deregistered: as good as critical
					}
				}
			}
			seen = current
		case <-tick.C:
		case <-m.kick:
		}
		if seen != nil {
			m.reconcile(ctx, seen, badSince, returning)
		}
	}
}

// reconcile brings the metadata in line with what discovery says and moves replicas.
func (m *Manager) reconcile(ctx context.Context, seen map[string]discovery.Member, badSince map[string]time.Time, returning map[string]bool) {
	var brokers map[string]meta.Broker
	m.store.Read(func(s *meta.State) {
		brokers = make(map[string]meta.Broker, len(s.Brokers))
		for id, b := range s.Brokers {
			brokers[id] = *b
		}
	})
	for id, b := range brokers {
		if _, listed := seen[id]; !listed && b.State != meta.BrokerDead && b.State != meta.BrokerReleased {
			if _, bad := badSince[id]; !bad {
				// Known but not registered at all (it died while no write manager
				// watched, and Consul dropped it): as good as critical from now.
				badSince[id] = time.Now()
			}
		}
	}
	for id, mb := range seen {
		if mb.Health != discovery.Passing {
			continue
		}
		b, known := brokers[id]
		raftAddr, httpAddr := mb.Meta[discovery.MetaRaftAddr], mb.Addr
		if known && (b.State == meta.BrokerReleased ||
			b.State != meta.BrokerDead && b.Addr == httpAddr && b.RaftAddr == raftAddr) {
			continue
		}
		if _, err := m.apply(ctx, meta.BrokerUp{ID: id, Addr: httpAddr, RaftAddr: raftAddr}); err != nil {
			m.log.Warn("record broker up", "broker", id, "err", err)
			continue
		}
		m.log.Info("broker alive", "broker", id, "addr", httpAddr)
		if known && b.State == meta.BrokerDead {
			returning[id] = true
		}
	}
	for id := range returning {
		if m.dropStaleReplicas(ctx, id) {
			delete(returning, id)
		}
	}
	for id, since := range badSince {
		b, known := brokers[id]
		if !known || b.State == meta.BrokerDead || b.State == meta.BrokerReleased || time.Since(since) < m.cfg.BrokerGrace {
			continue
		}
		if _, err := m.apply(ctx, meta.BrokerDown{ID: id}); err != nil {
			m.log.Warn("record broker dead", "broker", id, "err", err)
			continue
		}
		m.log.Warn("broker dead", "broker", id, "critical_for", time.Since(since).Round(time.Millisecond))
	}
	m.evacuate(ctx)
	m.topUp(ctx)
}

// topUp adds replicas to partitions created while fewer brokers were alive than their
// replication factor, one replica per partition per pass.
func (m *Manager) topUp(ctx context.Context) {
	var moves []meta.Move
	m.store.Read(func(s *meta.State) { moves = meta.PlanTopUp(s.HealthyLoads(), s.UnderReplicated()) })
	forEach(moves, func(mv meta.Move) error {
		if err := m.addReplica(ctx, mv); err != nil {
			m.log.Warn("add replica", "move", mv, "err", err)
			return err
		}
		m.log.Info("replica added", "topic", mv.Topic, "partition", mv.Partition, "broker", mv.To)
		return nil
	})
}

// evacuate moves replicas off dead and decommissioning brokers and releases
// decommissioned brokers that hold nothing any more.
func (m *Manager) evacuate(ctx context.Context) {
	type job struct {
		from  meta.Broker
		moves []meta.Move
		held  int
	}
	var jobs []job
	m.store.Read(func(s *meta.State) {
		for _, b := range s.BrokerList() {
			if b.State == meta.BrokerAlive || b.State == meta.BrokerReleased {
				continue
			}
			held := s.PartitionsOf(b.ID)
			jobs = append(jobs, job{from: b.Broker, held: len(held),
				moves: meta.PlanEvacuation(s.HealthyLoads(), held, b.ID)})
		}
	})
	for _, j := range jobs {
		if j.held == 0 && j.from.State == meta.BrokerDecommissioning {
			if _, err := m.apply(ctx, meta.ReleaseBroker{ID: j.from.ID}); err != nil {
				m.log.Warn("release broker", "broker", j.from.ID, "err", err)
			} else {
				m.log.Info("broker released", "broker", j.from.ID)
			}
			continue
		}
		// Moves of different partitions are independent: run them together, so that
		// restoring the replication factor takes about one move, not one per partition.
		forEach(j.moves, func(mv meta.Move) error {
			start := time.Now()
			if err := m.moveReplica(ctx, mv, j.from.State == meta.BrokerDead); err != nil {
				m.log.Warn("move replica", "move", mv, "err", err)
				return err
			}
			m.log.Info("replica moved", "topic", mv.Topic, "partition", mv.Partition, "from", mv.From, "to", mv.To,
				"took", time.Since(start).Round(time.Millisecond))
			return nil
		})
	}
}
