package manager

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/quorumq/quorumq/manager/meta"
)

const (
	// surveyCalls bounds the survey's requests to brokers in flight at once (creating a
	// missing replica, dropping a stale one, recording a leader).
	surveyCalls = 16
	// listTimeout bounds one broker's listing of its replicas.
	listTimeout = 20 * time.Second
)

// startSurvey runs a survey in the background unless one is under way.
func (mv *mover) startSurvey(ctx context.Context) {
	mv.mu.Lock()
	busy := mv.surveyed
	mv.surveyed = true
	mv.mu.Unlock()
	if busy {
		return
	}
	mv.wg.Add(1)
	go func() {
		defer mv.wg.Done()
		began := time.Now()
		mv.survey(ctx)
		mv.mu.Lock()
		mv.surveyed = false
		mv.nextSurvey = time.Now().Add(surveyPace * time.Since(began))
		mv.mu.Unlock()
	}()
}

// surveyPace spaces the periodic surveys by this many times the last one's length,
// when that is longer than surveyEvery: listing 30,000 replicas took a tenth of the
// write manager's CPU, and more of the brokers', with surveys every 5 s, and a loaded
// machine lists more slowly, so surveys then come less often.
const surveyPace = 20

// survey lists the replicas of every broker not known dead and brings them in line
// with the metadata: a replica the metadata places on a broker that lacks it is
// created (a write manager died between placing and creating it), one a broker holds
// without the metadata placing it there leaves its group and is deleted (moved away
// while its broker was dead, or left by a move that failed), and each partition's
// leader, as its replicas name it, is kept for the planner and recorded. Partitions
// with a move under way are left to it.
func (mv *mover) survey(ctx context.Context) {
	m := mv.m
	view := m.brokerView()
	var listed []meta.Broker
	for _, b := range view {
		if b.State != meta.BrokerDead && b.State != meta.BrokerReleased {
			listed = append(listed, b)
		}
	}
	began := time.Now()
	held := map[string]map[string]meta.Partition{} // broker → group → its topic and index
	leaders := map[string]string{}                 // group → leader
	members := map[string][]string{}               // group → members, as its leader counts them
	var mu sync.Mutex
	forEach(listed, func(b meta.Broker) error {
		lctx, cancel := context.WithTimeout(ctx, listTimeout)
		defer cancel()
		parts, err := m.brokers.replicaStatuses(lctx, b)
		if err != nil {
			return err
		}
		mu.Lock()
		defer mu.Unlock()
		held[b.ID] = map[string]meta.Partition{}
		for _, st := range parts {
			g := meta.GroupName(st.Topic, st.Partition)
			held[b.ID][g] = meta.Partition{Topic: st.Topic, Index: st.Partition}
			if st.IsLeader {
				leaders[g] = b.ID
				members[g] = nil
				for _, m := range st.Members {
					members[g] = append(members[g], m.ID)
				}
			}
		}
		return nil
	})
	if ctx.Err() != nil {
		return
	}
	// The moves under way before the metadata: a move that ends in between is then
	// seen in the metadata, never taken for a stray replica or a missing one.
	busy := m.beingCreated(began)
	mv.mu.Lock()
	for g := range mv.running {
		busy[g] = true
	}
	for g, at := range mv.changed {
		switch {
		case at.After(began):
			// Moved or handed over while the listing ran: what it says is older than
			// what the mover knows, so the group is left alone this time.
			busy[g] = true
			if l, ok := mv.leaders[g]; ok {
				leaders[g] = l
			} else {
				delete(leaders, g)
			}
		case time.Since(at) > time.Minute:
			delete(mv.changed, g)
		}
	}
	mv.leaders = leaders
	mv.mu.Unlock()
	var fixes []fix
	m.store.Read(func(s *meta.State) {
		placed := map[string]meta.Partition{} // group → partition
		for _, name := range s.TopicNames() {
			for _, p := range s.Topics[name].Partitions {
				g := p.GroupName()
				p.Replicas = slices.Clone(p.Replicas)
				placed[g] = p
				if busy[g] {
					continue
				}
				if l := leaders[g]; l != "" && l != p.Leader && p.Has(l) {
					fixes = append(fixes, fix{g, func() { m.recordLeader(ctx, p, l) }})
				}
				for _, do := range mv.missing(ctx, p, held, view) {
					fixes = append(fixes, fix{g, do})
				}
				if ms, ok := members[g]; ok {
					for _, do := range mv.membership(ctx, p, ms, held, view) {
						fixes = append(fixes, fix{g, do})
					}
				}
			}
		}
		for id, groups := range held {
			for g, stray := range groups {
				p, known := placed[g]
				if busy[g] || known && p.Has(id) {
					continue
				}
				if !known {
					p = stray
				}
				fixes = append(fixes, fix{g, func() { m.dropStray(ctx, view, id, p, known) }})
			}
		}
	})
	sem := make(chan struct{}, surveyCalls)
	var wg sync.WaitGroup
	for _, f := range fixes {
		sem <- struct{}{}
		if !mv.claim(f.group, began) {
			<-sem
			continue
		}
		wg.Go(func() {
			defer func() { <-sem; mv.release(f.group) }()
			f.do()
		})
	}
	wg.Wait()
}

// fix is one of a survey's corrections, to one group.
type fix struct {
	group string
	do    func()
}

// claim reports whether a survey's fix of group may run now, and if so keeps the
// planner off the group until release. With thousands of fixes, 16 at a time, a fix
// may run long after the listing it was decided on: a move of the group started or
// done since then makes it stale (a stale fix once removed the replica a retried move
// had just added, and the move then removed the old one: two members of three).
func (mv *mover) claim(group string, listed time.Time) bool {
	mv.mu.Lock()
	defer mv.mu.Unlock()
	if _, moving := mv.running[group]; moving || mv.changed[group].After(listed) {
		return false
	}
	mv.fixing[group]++
	return true
}

func (mv *mover) release(group string) {
	mv.mu.Lock()
	defer mv.mu.Unlock()
	if mv.fixing[group]--; mv.fixing[group] <= 0 {
		delete(mv.fixing, group)
	}
}

// missing adds to fixes the creation of p's replicas that listed brokers lack. A
// partition no broker holds yet is bootstrapped with all its replicas; otherwise the
// missing replica joins the existing group.
func (mv *mover) missing(ctx context.Context, p meta.Partition, held map[string]map[string]meta.Partition, view map[string]meta.Broker) (fixes []func()) {
	g := p.GroupName()
	exists := false
	var lacking []string
	for _, id := range p.Replicas {
		h, listed := held[id]
		switch {
		case !listed: // dead or unreachable: the planner moves it if it stays so
		case h[g].Topic != "":
			exists = true
		default:
			lacking = append(lacking, id)
		}
	}
	for _, id := range lacking {
		members := p.Replicas
		if exists {
			members = slices.DeleteFunc(slices.Clone(p.Replicas), func(r string) bool { return r == id })
		}
		fixes = append(fixes, func() {
			if err := mv.m.brokers.createReplica(ctx, view, view[id], p, members); err != nil {
				mv.m.log.Debug("create missing replica", "group", g, "broker", id, "err", err)
			}
		})
	}
	return fixes
}

// membership adds to fixes what brings p's Raft group in line with the metadata, by
// its leader's count of members ms: a replica a broker holds outside the group (its
// move was cut short) is added, a member the metadata does not place and whose broker
// is not listed (dead) is removed. Missing replicas and replicas held but not placed
// are missing's and dropStray's.
func (mv *mover) membership(ctx context.Context, p meta.Partition, ms []string, held map[string]map[string]meta.Partition, view map[string]meta.Broker) (fixes []func()) {
	g := p.GroupName()
	for _, id := range p.Replicas {
		if _, holds := held[id][g]; holds && !slices.Contains(ms, id) {
			fixes = append(fixes, func() {
				if err := mv.m.brokers.addMember(ctx, view, p, view[id]); err != nil {
					mv.m.log.Debug("add replica back to its group", "group", g, "broker", id, "err", err)
				}
			})
		}
	}
	for _, id := range ms {
		if _, listed := held[id]; !listed && !p.Has(id) {
			fixes = append(fixes, func() {
				if err := mv.m.brokers.removeMember(ctx, view, p, id); err != nil {
					mv.m.log.Debug("remove unplaced member", "group", g, "broker", id, "err", err)
				}
			})
		}
	}
	return fixes
}

// recordLeader records the leader p's replicas named.
func (m *Manager) recordLeader(ctx context.Context, p meta.Partition, id string) {
	if _, err := m.apply(ctx, meta.SetLeader{Topic: p.Topic, Partition: p.Index, Leader: id}); err != nil {
		m.log.Debug("record partition leader", "group", p.GroupName(), "leader", id, "err", err)
	}
}

// dropStray takes broker id's replica of p out of p's Raft group (known: p is in the
// metadata, whose replicas lead the way to its leader) and deletes it.
func (m *Manager) dropStray(ctx context.Context, view map[string]meta.Broker, id string, p meta.Partition, known bool) {
	if known {
		// The stray itself names the leader when the metadata's replicas do not answer.
		p.Replicas = append(p.Replicas, id)
		if err := m.brokers.removeMember(ctx, view, p, id); err != nil {
			m.log.Debug("remove stray replica from its group", "group", p.GroupName(), "broker", id, "err", err)
			return
		}
	}
	if err := m.brokers.dropReplica(ctx, view[id], p); err != nil {
		m.log.Debug("delete stray replica", "group", p.GroupName(), "broker", id, "err", err)
		return
	}
	m.log.Info("stray replica deleted", "group", p.GroupName(), "broker", id)
}
