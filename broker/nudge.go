package broker

import (
	"context"
	"hash/fnv"
	"maps"
	"sort"
	"time"

	"github.com/hashicorp/raft"
)

// A partition's followers notice a dead leader when raft's heartbeat timer, random in
// [HeartbeatTimeout, 2×HeartbeatTimeout), finds the last contact older than
// HeartbeatTimeout: many seconds, since PartitionTiming stretches heartbeats so that idle
// partitions cost little, and then both survivors tend to stand together and split the
// vote. A broker knows sooner: it pings the other brokers every pingEvery, and one whose
// process is gone refuses the ping's connection. For each partition such a broker led,
// one survivor, the heir (by a hash of the group, the same on every broker), then stands
// for election at once (election.Node.Campaign: raft's TimeoutNow, no pre-vote, and the
// other survivor grants its vote although it still knows the dead leader), so one
// election settles it. A broker that does not answer without refusing may be alive and
// only slow or cut off from this one, and its leaders must keep what the others still
// follow: there the survivors wait until the partition's last contact is
// LeaderLeaseTimeout old (longer than any gap between a live leader's heartbeats) and
// stand through raft's pre-vote, which a member still hearing from the leader refuses.
// The other survivor goes nudgeLag after the heir, should the heir not win (its log
// behind, its pre-vote refused, its broker down too). Both have their timeouts lowered
// to the lease until the group has a leader again, so that an election that fails is
// retried sooner (restoreNudged puts them back). Raft's rules decide everything; a wrong
// suspicion only makes a follower give up on a silent leader sooner. A leader that
// stalls while its process still answers pings is found at raft's own pace.
const (
	pingGroup, pingMethod = "broker", "ping"

	pingEvery   = 200 * time.Millisecond
	pingTimeout = 500 * time.Millisecond
	nudgeEvery  = 50 * time.Millisecond
	nudgeLag    = time.Second
	// peersEvery: listing the peers walks every replica (7 % of an idle broker's CPU
	// with 1,000 partitions when done at every ping); a new peer waits this long for
	// its first ping.
	peersEvery = 2 * time.Second
)

// watchPeers pings the other brokers and nudges the partitions led by any that do not
// answer, until ctx is done.
func (b *Broker) watchPeers(ctx context.Context) {
	w := newPeerWatch(b.log, b.peerAddrs)
	nudged := map[*replica]*nudge{}
	var led suspectsLed
	tick := time.NewTicker(nudgeEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			for _, addr := range w.due(now) {
				go func() {
					pctx, cancel := context.WithTimeout(ctx, pingTimeout)
					_, err := b.mux.Call(pctx, raft.ServerAddress(addr), pingGroup, pingMethod, nil)
					cancel()
					w.pinged(ctx, addr, err)
				}()
			}
			suspects := w.suspects()
			if len(suspects) > 0 {
				b.nudgeFollowers(ctx, now, suspects, led.of(b, now, suspects), nudged)
			} else {
				led = suspectsLed{}
			}
			if len(nudged) > 0 {
				b.restoreNudged(suspects, nudged)
			}
		}
	}
}

// peerAddrs lists the raft addresses of the other members of this broker's partitions.
func (b *Broker) peerAddrs() []string {
	self := b.RaftAddr()
	seen := map[string]bool{}
	var out []string
	for _, r := range b.allReplicas() {
		r.mu.Lock()
		for _, p := range r.peers {
			if p.RaftAddr != self && p.RaftAddr != "" && !seen[p.RaftAddr] {
				seen[p.RaftAddr] = true
				out = append(out, p.RaftAddr)
			}
		}
		r.mu.Unlock()
	}
	return out
}

func (b *Broker) allReplicas() []*replica {
	b.mu.RLock()
	defer b.mu.RUnlock()
	rs := make([]*replica, 0, len(b.replicas))
	for _, r := range b.replicas {
		rs = append(rs, r)
	}
	return rs
}

// suspectsLed caches the replicas whose leader is a suspect: walking every replica at
// every nudgeEvery took 7 % of a broker's CPU with 6,000 replicas while a slow peer
// stayed suspected. The walk is redone when the suspects change and every rescanEvery,
// which is how late a replica whose leader became a suspect meanwhile is found.
type suspectsLed struct {
	at       time.Time
	suspects map[string]suspicion
	replicas []*replica
}

const rescanEvery = time.Second

func (l *suspectsLed) of(b *Broker, now time.Time, suspects map[string]suspicion) []*replica {
	if now.Sub(l.at) < rescanEvery && maps.EqualFunc(l.suspects, suspects, func(a, b suspicion) bool { return a.since.Equal(b.since) }) {
		return l.replicas
	}
	*l = suspectsLed{at: now, suspects: suspects}
	for _, r := range b.allReplicas() {
		if _, ok := suspects[r.node.Leader().Addr]; ok {
			l.replicas = append(l.replicas, r)
		}
	}
	return l.replicas
}

// nudge is a replica the watcher made stand; done is closed once it stood and its
// timeouts are lowered.
type nudge struct{ done chan struct{} }

// nudgeFollowers makes the followers among led whose leader is suspected stand for
// election, the heir first, the other survivor nudgeLag after the suspicion began: at
// once where the leader's broker is gone, through a pre-vote once the last contact is
// LeaderLeaseTimeout old where it only does not answer. It lowers their
// HeartbeatTimeout and ElectionTimeout to the lease, the least raft accepts (which
// also wakes raft's follower loop to compare the last contact with it at once), until
// restoreNudged puts them back.
func (b *Broker) nudgeFollowers(ctx context.Context, now time.Time, suspects map[string]suspicion, led []*replica, nudged map[*replica]*nudge) {
	lease := b.cfg.Timing.LeaderLeaseTimeout
	for _, r := range led {
		leader := r.node.Leader()
		s, suspected := suspects[leader.Addr]
		if !suspected || nudged[r] != nil {
			continue
		}
		if r.heir(leader.ID) != b.cfg.ID && now.Sub(s.since) < nudgeLag {
			continue
		}
		if !s.gone && time.Since(r.node.Raft().LastContact()) < lease {
			continue
		}
		n := &nudge{done: make(chan struct{})}
		nudged[r] = n
		go func() {
			defer close(n.done)
			if s.gone {
				// Standing first: lowered timeouts wake raft's follower loop, which would
				// start a pre-vote (refused while the other survivor knows the leader).
				cctx, cancel := context.WithTimeout(ctx, pingTimeout)
				defer cancel()
				if err := r.node.Campaign(cctx); err != nil {
					b.log.Debug("partition cannot stand for election", "group", r.group, "error", err)
				}
			}
			if err := r.setTimeouts(lease, lease); err != nil {
				b.log.Debug("cannot nudge partition", "group", r.group, "error", err)
			}
		}()
	}
}

// restoreNudged gives the nudged replicas their usual timing back once they know a
// leader other than a suspect (or are closed).
func (b *Broker) restoreNudged(suspects map[string]suspicion, nudged map[*replica]*nudge) {
	for r, n := range nudged {
		select {
		case <-n.done:
		default:
			continue // still standing
		}
		leader := r.node.Leader()
		if _, suspected := suspects[leader.Addr]; (leader.Addr == "" || suspected) && !r.closed() {
			continue
		}
		delete(nudged, r)
		if err := r.setTimeouts(b.cfg.Timing.HeartbeatTimeout, b.cfg.Timing.ElectionTimeout); err != nil {
			b.log.Error("restoring partition timing", "group", r.group, "error", err)
		}
	}
}

// hastenElection: a group that opens without a leader (new, or all its members starting
// again) would wait HeartbeatTimeout or more for its first election. One member, chosen
// by a hash of the group the same way on every broker, gets its timeouts lowered to
// LeaderLeaseTimeout: raft's follower loop wakes and, never having heard from a leader,
// stands at once, and again every lease to twice that while the group has no leader; it
// takes its usual timing back once the group has one. Its pre-vote is granted since
// nobody else has a leader yet; where one exists, it is refused, harmlessly.
func (b *Broker) hastenElection(r *replica) {
	first := r.heir("")
	if _, ok := r.peer(r.first); ok {
		first = r.first
	}
	if first != b.cfg.ID {
		return
	}
	lease := b.cfg.Timing.LeaderLeaseTimeout
	if err := r.setTimeouts(lease, lease); err != nil {
		b.log.Debug("cannot hasten the first election", "group", r.group, "error", err)
		return
	}
	go func() {
		t := time.NewTicker(nudgeEvery)
		defer t.Stop()
		for r.node.Leader().Addr == "" {
			select {
			case <-r.ctx.Done():
				return
			case <-t.C:
			}
		}
		if err := r.setTimeouts(b.cfg.Timing.HeartbeatTimeout, b.cfg.Timing.ElectionTimeout); err != nil {
			b.log.Error("restoring partition timing", "group", r.group, "error", err)
		}
	}()
}

// setTimeouts changes the replica's raft HeartbeatTimeout and ElectionTimeout.
func (r *replica) setTimeouts(heartbeat, election time.Duration) error {
	rf := r.node.Raft()
	rc := rf.ReloadableConfig()
	rc.HeartbeatTimeout, rc.ElectionTimeout = heartbeat, election
	return rf.ReloadConfig(rc)
}

// closed reports whether the replica is closing or closed.
func (r *replica) closed() bool { return r.ctx.Err() != nil }

// heir names the member (other than the departed leader) that should win the election
// after it: spread over the survivors by a hash of the group, the same on every broker.
func (r *replica) heir(departed string) string {
	r.mu.Lock()
	ids := make([]string, 0, len(r.peers))
	for id := range r.peers {
		if id != departed {
			ids = append(ids, id)
		}
	}
	r.mu.Unlock()
	if len(ids) == 0 {
		return ""
	}
	sort.Strings(ids)
	h := fnv.New32a()
	h.Write([]byte(r.group))
	return ids[h.Sum32()%uint32(len(ids))]
}
