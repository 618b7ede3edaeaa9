package manager

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/quorumq/quorumq/broker/brokerapi"
	"github.com/quorumq/quorumq/election"
	"github.com/quorumq/quorumq/internal/retry"
	"github.com/quorumq/quorumq/manager/meta"
)

const announceTimeout = 2 * time.Second

// Announcement retries: a few attempts with doubling pauses (0.2 s to 1.6 s, 3 s in
// all), each attempt bounded by announceTimeout. A broker that missed them all hears
// again at the write manager's next periodic round (ensureEvery) or when it comes back
// up; a broker that refuses the announcement (a 4xx) is not asked again.
var announcePolicy = retry.Policy{First: 200 * time.Millisecond, Max: 1600 * time.Millisecond, MaxAttempts: 5}

// announcer tells brokers (PUT /manager, broker/announce.go) that this manager is the
// write manager of one Raft term. It lives as long as that leadership: its context is
// the leadership's, so a deposed write manager stops retrying, and an announcement of
// it that still arrives late carries the older term, which brokers ignore.
type announcer struct {
	m   *Manager
	ctx context.Context
	msg brokerapi.ManagerAnnouncement
	wg  sync.WaitGroup

	mu   sync.Mutex
	busy map[string]bool // brokers an announcement is on its way to
}

// newAnnouncer is called once the leadership's barrier has passed. The term is read
// before checking that this manager still leads: terms only grow, so a term read while
// leading is the leadership's own, never a successor's under this manager's name.
func (m *Manager) newAnnouncer(ctx context.Context, node *election.Node) (*announcer, bool) {
	term := node.Raft().CurrentTerm()
	if !node.IsLeader() {
		return nil, false
	}
	return &announcer{m: m, ctx: ctx, busy: map[string]bool{},
		msg: brokerapi.ManagerAnnouncement{ID: m.cfg.ID, HTTPAddr: m.httpAddr, Term: term}}, true
}

// toAlive announces to every broker the metadata holds alive.
func (a *announcer) toAlive() {
	var alive []meta.Broker
	a.m.store.Read(func(s *meta.State) {
		for _, b := range s.Brokers {
			if b.State == meta.BrokerAlive {
				alive = append(alive, *b)
			}
		}
	})
	for _, b := range alive {
		a.to(b.ID, b.Addr)
	}
}

// to announces to one broker in the background, retrying with backoff until the broker
// answers, the attempts run out or the leadership ends. While one announcement to a
// broker is under way, more for the same broker are dropped.
func (a *announcer) to(id, addr string) {
	a.mu.Lock()
	if a.busy[id] {
		a.mu.Unlock()
		return
	}
	a.busy[id] = true
	a.mu.Unlock()
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		defer func() {
			a.mu.Lock()
			delete(a.busy, id)
			a.mu.Unlock()
		}()
		attempts := 0
		err := retry.Do(a.ctx, announcePolicy, func(context.Context) error {
			attempts++
			err := a.once(meta.Broker{ID: id, Addr: addr})
			var be *brokerError
			if errors.As(err, &be) && be.clientFault() {
				return retry.Permanent(err)
			}
			return err
		})
		if err != nil && a.ctx.Err() == nil {
			a.m.log.Warn("announce the write manager to a broker", "broker", id, "attempts", attempts, "err", err)
		}
	}()
}

func (a *announcer) once(b meta.Broker) error {
	ctx, cancel := context.WithTimeout(a.ctx, announceTimeout)
	defer cancel()
	var reply brokerapi.AnnounceReply
	if err := a.m.brokers.call(ctx, b, http.MethodPut, "/manager", a.msg, &reply); err != nil {
		return err
	}
	if !reply.Accepted {
		// Another manager has led since this one took over: its own end is near.
		a.m.log.Info("broker knows a newer write manager", "broker", b.ID, "manager", reply.Manager.ID, "term", reply.Manager.Term, "own_term", a.msg.Term)
	}
	return nil
}

// wait waits for the announcements under way; they end with the leadership's context.
func (a *announcer) wait() { a.wg.Wait() }
