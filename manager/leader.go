package manager

import (
	"context"
	"sync"
	"time"

	"github.com/quorumq/quorumq/discovery"
	"github.com/quorumq/quorumq/election"
)

// followLeadership runs the write manager's duties while this manager leads: it carries
// the discovery tag "leader" (the Consul UI shows which manager writes) and takes it off
// every other manager (see discovery.HoldTag), announces
// itself to the brokers and reconciles them. Each new term starts with a read barrier,
// so the duties act on a state that holds every entry committed by earlier leaders.
func (m *Manager) followLeadership(ctx context.Context, node *election.Node) {
	var stopLeading func()
	defer func() {
		if stopLeading != nil {
			stopLeading()
		}
	}()
	for leading := range node.LeaderChanges() {
		if stopLeading != nil {
			stopLeading()
			stopLeading = nil
		}
		if leading {
			m.log.Info("became the write manager")
			stopLeading = m.startLeading(ctx, node)
		}
	}
}

// startLeading runs the write manager's duties until the returned stop is called.
func (m *Manager) startLeading(ctx context.Context, node *election.Node) (stop func()) {
	lctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		discovery.HoldTag(lctx, m.cfg.Discovery, discovery.ServiceManager, m.cfg.ID, discovery.TagLeader, m.log)
	}()
	go func() {
		defer wg.Done()
		if err := m.barrier(lctx, node); err != nil {
			return
		}
		ann, ok := m.newAnnouncer(lctx, node)
		if !ok {
			return
		}
		defer ann.wait()
		ann.toAlive()
		mv := newMover(m)
		m.mover.Store(mv)
		defer m.mover.CompareAndSwap(mv, nil)
		wg.Add(1) // while this goroutine's own count holds Wait off
		go func() {
			defer wg.Done()
			mv.run(lctx)
		}()
		m.watchBrokers(lctx, ann, mv)
	}()
	return func() {
		cancel()
		wg.Wait()
	}
}

// barrier waits until the local state holds everything committed before this term.
func (m *Manager) barrier(ctx context.Context, node *election.Node) error {
	for {
		bctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := node.ReadBarrier(bctx)
		cancel()
		if err == nil || ctx.Err() != nil {
			return ctx.Err()
		}
		m.log.Warn("leader read barrier", "err", err)
	}
}
