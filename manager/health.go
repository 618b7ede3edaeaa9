package manager

import (
	"context"
	"time"

	"github.com/quorumq/quorumq/discovery"
	"github.com/quorumq/quorumq/manager/meta"
)

// reconcileEvery is how often the write manager compares discovery with the metadata
// even when discovery did not change (a broker's grace period runs out).
const reconcileEvery = time.Second

// announceEvery is how often every alive broker hears who the write manager is, in
// case a restart went unnoticed by discovery.
const announceEvery = 10 * time.Second

// watchBrokers is the write manager's health loop: it follows quorumq-broker in
// discovery, records brokers that come up and declares dead those critical (or gone)
// for longer than the grace period, and wakes mv, which moves the replicas. It never
// waits for a move. A broker that registers or passes its health check again hears
// from ann who the write manager is (it may have restarted and forgotten).
func (m *Manager) watchBrokers(ctx context.Context, ann *announcer, mv *mover) {
	updates, err := m.cfg.Discovery.Watch(ctx, discovery.ServiceBroker)
	if err != nil {
		m.log.Error("watch brokers", "err", err)
		return
	}
	badSince := map[string]time.Time{}   // brokers not passing, since when
	var seen map[string]discovery.Member // nil until discovery has answered once
	tick := time.NewTicker(reconcileEvery / 2)
	defer tick.Stop()
	announce := time.NewTicker(announceEvery)
	defer announce.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-announce.C:
			ann.toAlive()
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
		}
		if seen != nil && m.reconcile(ctx, seen, badSince) {
			mv.startSurvey(ctx) // a returning broker may hold stray replicas
			mv.wake()
		}
	}
}

// reconcile brings the metadata in line with what discovery says, and reports whether
// it changed a broker's state.
func (m *Manager) reconcile(ctx context.Context, seen map[string]discovery.Member, badSince map[string]time.Time) (changed bool) {
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
		changed = true
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
		changed = true
	}
	return changed
}
