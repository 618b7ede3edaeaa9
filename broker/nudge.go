package broker

import (
	"context"
	"hash/fnv"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// A partition's followers notice a dead leader when raft's heartbeat timer, random in
// [HeartbeatTimeout, 2×HeartbeatTimeout), finds the last contact older than
// HeartbeatTimeout, and both survivors then tend to stand together and split the vote
// (measured with 1,000 partitions and a 1 s HeartbeatTimeout: all led again 2.9–4.8 s
// after a SIGKILL). A broker knows more than each group does: it pings the other
// brokers, and while one does not answer it watches the partitions that broker leads.
// Once a partition's last contact is LeaderLeaseTimeout old, it lowers the follower's
// HeartbeatTimeout to that (ReloadConfig also wakes raft's follower loop to compare at
// once). One survivor, the heir (by a hash of the group, the same on every broker), must
// go second: the first one's pre-vote is refused (the heir still has a leader), the
// heir's is granted (the first no longer has one), so one election settles it. When
// both go within a round trip they split the vote and wait a whole election timeout.
// The two survivors' last contacts differ by up to a heartbeat gap (HeartbeatTimeout/5
// plus the coalescing delay, 700 ms with PartitionTiming), so instead of guessing a lag
// the first survivor tells the heir's broker once its raft has let go of the leader
// (clearedMethod), and the heir goes at once; it goes nudgeLag late on its own if that
// word never comes. Raft's own rules decide everything; a wrong suspicion only makes a
// follower give up on a silent leader sooner. So failover no longer waits for
// HeartbeatTimeout, which PartitionTiming can stretch to send fewer heartbeats; a leader
// that stalls while its process still answers pings is found at raft's own pace.
const (
	pingGroup, pingMethod = "broker", "ping"
	clearedMethod         = "cleared" // body: group names, one per line

	pingEvery   = 200 * time.Millisecond
	pingTimeout = 500 * time.Millisecond
	nudgeEvery  = 50 * time.Millisecond
	nudgeLag    = time.Second
	clearedTTL  = 10 * time.Second // a word from the other survivor older than this is stale
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
				b.nudgeFollowers(suspects, nudged)
			}
			if len(nudged) > 0 {
				b.tellHeirs(ctx, nudged)
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

// nudge is what the watcher remembers of a replica it lowered.
type nudge struct {
	heir string // member id that should win the election; "" when it is this broker
	told bool   // the heir's broker has been told that this replica let go of the leader
}

// nudgeFollowers makes the followers whose leader is suspected start an election once
// the leader has been silent for LeaderLeaseTimeout, the heir only after the other
// survivor has let go of the leader (or nudgeLag more): it lowers their HeartbeatTimeout
// and ElectionTimeout to the lease, the least raft accepts, which also wakes raft's
// follower loop to compare at once. nudged holds the replicas lowered; restoreNudged
// puts their timing back.
func (b *Broker) nudgeFollowers(suspects map[string]bool, nudged map[*replica]*nudge) {
	lease := b.cfg.Timing.LeaderLeaseTimeout
	for _, r := range b.allReplicas() {
		leader := r.node.Leader()
		if !suspects[leader.Addr] || nudged[r] != nil {
			continue
		}
		heir := r.heir(leader.ID)
		wait := lease
		if heir == b.cfg.ID {
			heir = ""
			if !b.cleared.since(r.group, time.Now().Add(-clearedTTL)) {
				wait += nudgeLag
			}
		}
		if time.Since(r.node.Raft().LastContact()) < wait {
			continue
		}
		if err := r.setTimeouts(lease, lease); err != nil {
			b.log.Debug("cannot nudge partition", "group", r.group, "error", err)
			continue
		}
		nudged[r] = &nudge{heir: heir}
	}
}

// tellHeirs tells the heirs' brokers which of the nudged replicas have let go of their
// leader, so that the heirs stand for election now.
func (b *Broker) tellHeirs(ctx context.Context, nudged map[*replica]*nudge) {
	groups := map[string][]string{} // heir's raft address → groups
	for r, n := range nudged {
		if n.told || n.heir == "" || r.node.Leader().Addr != "" {
			continue
		}
		n.told = true
		r.mu.Lock()
		addr := r.peers[n.heir].RaftAddr
		r.mu.Unlock()
		if addr != "" {
			groups[addr] = append(groups[addr], r.group)
		}
	}
	for addr, gs := range groups {
		go func() {
			cctx, cancel := context.WithTimeout(ctx, pingTimeout)
			defer cancel()
			if _, err := b.mux.Call(cctx, raft.ServerAddress(addr), pingGroup, clearedMethod, []byte(strings.Join(gs, "\n"))); err != nil {
				b.log.Debug("cannot tell heir's broker", "raft", addr, "error", err)
			}
		}()
	}
}

// restoreNudged gives the nudged replicas their usual timing back once they know a
// leader other than a suspect (or are closed).
func (b *Broker) restoreNudged(suspects map[string]bool, nudged map[*replica]*nudge) {
	for r := range nudged {
		if leader := r.node.Leader(); (leader.Addr == "" || suspects[leader.Addr]) && !r.closed() {
			continue
		}
		delete(nudged, r)
		if err := r.setTimeouts(b.cfg.Timing.HeartbeatTimeout, b.cfg.Timing.ElectionTimeout); err != nil {
			b.log.Error("restoring partition timing", "group", r.group, "error", err)
		}
	}
}

// clearedGroups records when another broker said its replica of a group let go of a
// suspected leader.
type clearedGroups struct {
	mu sync.Mutex
	at map[string]time.Time
}

// serve is the clearedMethod handler.
func (c *clearedGroups) serve(_ context.Context, req []byte) ([]byte, error) {
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.at == nil {
		c.at = map[string]time.Time{}
	}
	for g := range strings.SplitSeq(string(req), "\n") {
		c.at[g] = now
	}
	for g, t := range c.at { // few entries: only after a broker's death
		if now.Sub(t) > clearedTTL {
			delete(c.at, g)
		}
	}
	return nil, nil
}

// since reports whether group was cleared after t.
func (c *clearedGroups) since(group string, t time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.at[group].After(t)
}

// hastenElection: a group that opens without a leader (new, or all its members starting
// again) would wait HeartbeatTimeout (3–6 s) for its first election. One member, chosen
// by a hash of the group the same way on every broker, stands after LeaderLeaseTimeout
// instead, and takes its usual timing back once the group has a leader. Its pre-vote is
// granted since nobody else has a leader yet; where one exists, it is refused, harmlessly.
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
