package broker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/url"
	"time"

	"github.com/quorumq/quorumq/broker/brokerapi"
	"github.com/quorumq/quorumq/broker/internal/store"
	"github.com/quorumq/quorumq/broker/partition"
	"github.com/quorumq/quorumq/election"
)

// A replica whose state cannot be repaired in place (its applied index, offsets,
// producers or a stored snapshot failed their checksum: they are the sum of every entry applied, which no
// peer can hand over piecemeal) is rebuilt: its data is dropped and it opens empty,
// recovering, and enters the group again as a new member does; the leader sends it a
// snapshot and the log after it. It stays a member meanwhile, so the group keeps its
// replication factor. It is rebuilt only once another member leads and reports no
// damage of its own: then a good copy of everything it held exists, so dropping it
// loses nothing; while no such leader is found, the damaged state is kept and the
// replica stays closed (serving nothing, voting for nobody).

// rebuildWait bounds how long an open waits for a healthy leader to rebuild from.
const rebuildWait = time.Minute

// openState opens the group's stores and its partition state, and checks its stored
// snapshots (a follower may be sent their state).
func (b *Broker) openState(group string) (*store.Group, *partition.FSM, error) {
	g, err := b.db.Group(group)
	if err != nil {
		return nil, nil, err
	}
	fsm, err := partition.New(g.Partition())
	if err == nil {
		err = g.SnapshotStore().Check()
	}
	return g, fsm, err
}

// rebuild drops the damaged state of the replica d describes, once a healthy leader
// exists, and opens it again empty.
func (b *Broker) rebuild(ctx context.Context, d replicaDesc, cause error) (*store.Group, *partition.FSM, error) {
	group := groupName(d.Topic, d.Partition)
	election.StorageFaults.WithLabelValues(election.FaultStateChecksum).Inc()
	b.log.Error("storage fault: partition state damaged; rebuilding the replica from a healthy leader", "group", group, "error", cause)
	ctx, cancel := context.WithTimeout(ctx, rebuildWait)
	defer cancel()
	for {
		leader, err := b.healthyLeader(ctx, d)
		if err == nil {
			rec, _ := json.Marshal(d)
			if err := b.db.ResetGroup(group, rec); err != nil {
				return nil, nil, fmt.Errorf("broker: rebuild %s: %w", group, err)
			}
			b.log.Warn("storage fault: replica state dropped; rejoining the group to be rebuilt by its leader", "group", group, "leader", leader)
			return b.openState(group)
		}
		b.log.Warn("storage fault: replica not rebuilt yet, its damaged state is kept", "group", group, "waiting_for", err.Error())
		select {
		case <-ctx.Done():
			return nil, nil, fmt.Errorf("broker: %s: %w; not rebuilt, for want of a healthy leader (%v): restart the broker to try again", group, cause, err)
		case <-time.After(repairEvery):
		}
	}
}

// healthyLeader returns the ID of another member that leads the group and reports no
// damage.
func (b *Broker) healthyLeader(ctx context.Context, d replicaDesc) (string, error) {
	var errs []error
	for _, p := range d.Peers {
		if p.ID == b.cfg.ID || p.HTTPAddr == "" {
			continue
		}
		var st brokerapi.ReplicaStatus
		err := b.peerGet(ctx, p.HTTPAddr, fmt.Sprintf("/replicas/%s/%d", url.PathEscape(d.Topic), d.Partition), &st)
		switch {
		case err != nil:
			errs = append(errs, err)
		case !st.IsLeader:
		case len(st.Damage) > 0:
			errs = append(errs, fmt.Errorf("leader %s is damaged itself: %v", p.ID, st.Damage))
		default:
			return p.ID, nil
		}
	}
	return "", errors.Join(append(errs, errors.New("no other member leads the group"))...)
}

// statusOf is the replica's status with the damage this broker knows of.
func (b *Broker) statusOf(ctx context.Context, r *replica) brokerapi.ReplicaStatus {
	st := r.status(ctx)
	if ok, why := r.node.Recovering(); ok {
		st.Damage = append(st.Damage, why)
	}
	for _, f := range b.faults.list() {
		if f.Group == r.group {
			st.Damage = append(st.Damage, "unrepaired: "+f.String())
		}
	}
	return st
}

// rebuildRunning rebuilds an open replica whose damaged messages no other replica can
// give back (cause), as rebuild does at open: once a healthy leader exists, the replica
// is closed, its data dropped, and it opens again empty, recovering, still a member.
// Without a healthy leader it stays as it is (the damaged range unavailable) and the
// error says why.
func (b *Broker) rebuildRunning(ctx context.Context, r *replica, cause error) error {
	d := r.desc()
	leader, err := b.healthyLeader(ctx, d)
	if err != nil {
		return fmt.Errorf("%w; and the replica cannot be rebuilt for want of a healthy leader: %v", cause, err)
	}
	b.mu.Lock()
	if b.replicas[r.group] != r || b.opening[r.group] != nil {
		b.mu.Unlock()
		return fmt.Errorf("%w; the replica is being reopened or deleted", cause)
	}
	done := make(chan struct{})
	b.opening[r.group] = done // ensureReplica waits for the rebuild
	delete(b.replicas, r.group)
	b.mu.Unlock()
	defer func() {
		b.mu.Lock()
		delete(b.opening, r.group)
		b.mu.Unlock()
		close(done)
	}()
	election.StorageFaults.WithLabelValues(election.FaultUnrepairable).Inc()
	b.log.Error("storage fault: damaged messages that no other replica can give back; rebuilding the replica from a healthy leader",
		"group", r.group, "leader", leader, "error", cause)
	if err := r.close(); err != nil {
		b.log.Warn("closing the replica to rebuild it", "group", r.group, "error", err)
	}
	rec, _ := json.Marshal(d)
	if err := b.db.ResetGroup(r.group, rec); err != nil {
		return fmt.Errorf("broker: rebuild %s: %w (restart the broker to finish it)", r.group, err)
	}
	b.faults.done(r.group, 0, math.MaxUint64)
	nr, err := b.openReplica(ctx, d, cause)
	if err != nil {
		return fmt.Errorf("broker: rebuild %s: reopen: %w (restart the broker to finish it)", r.group, err)
	}
	b.mu.Lock()
	b.replicas[r.group] = nr
	b.mu.Unlock()
	b.log.Warn("storage fault: replica data dropped; rejoining the group to be rebuilt by its leader", "group", r.group, "leader", leader)
	return nil
}
