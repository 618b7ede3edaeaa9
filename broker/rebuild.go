package broker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
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
