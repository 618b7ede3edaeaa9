package manager

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/quorumq/quorumq/broker/brokerapi"
	"github.com/quorumq/quorumq/manager/meta"
)

// errMoveStale is a planned move the metadata no longer calls for (another move, a
// broker's return or a cancelled decommission got there first): nothing was done.
var errMoveStale = errors.New("the placement changed since the move was planned")

// catchUpPoll is how often a new replica's progress is read while it catches up.
const catchUpPoll = 200 * time.Millisecond

// carryOut runs one job of the mover against the metadata as it stands now.
func (m *Manager) carryOut(ctx context.Context, j job) error {
	if j.transfer != nil {
		return m.transferLeader(ctx, *j.transfer)
	}
	mv := j.move
	view := m.brokerView()
	var p meta.Partition
	var rf int
	m.store.Read(func(s *meta.State) {
		if t, ok := s.Topics[mv.Topic]; ok && mv.Partition < len(t.Partitions) {
			p, rf = t.Partitions[mv.Partition], t.Replication
			p.Replicas = slices.Clone(p.Replicas)
		}
	})
	to, ok := view[mv.To]
	switch {
	case p.Topic == "" || !ok || to.State != meta.BrokerAlive || p.Has(mv.To):
		return errMoveStale
	case mv.From == "":
		if len(p.Replicas) >= rf {
			return errMoveStale
		}
		return m.addReplica(ctx, view, p, to)
	case !p.Has(mv.From) || view[mv.From].State == meta.BrokerAlive && len(p.Replicas) < rf:
		// Moving a replica off an alive broker of an under-replicated partition would
		// leave it further below its factor while the new one catches up.
		return errMoveStale
	}
	switch view[mv.From].State {
	case meta.BrokerAlive, meta.BrokerDecommissioning:
		return m.moveLive(ctx, view, p, mv.From, to)
	}
	return m.replaceDead(ctx, view, p, mv.From, to)
}

// addReplica creates a further replica of an under-replicated partition: it joins the
// group, the group adds it, then the metadata records it.
func (m *Manager) addReplica(ctx context.Context, view map[string]meta.Broker, p meta.Partition, to meta.Broker) error {
	if err := m.brokers.createReplica(ctx, view, to, p, p.Replicas); err != nil {
		return err
	}
	if err := m.brokers.addMember(ctx, view, p, to); err != nil {
		return err
	}
	_, err := m.apply(ctx, meta.AddReplica{Topic: p.Topic, Partition: p.Index, Broker: to.ID})
	return err
}

// replaceDead replaces the replica of a dead broker: it leaves the group first, so
// that the group's quorum never counts it, then the new replica joins.
func (m *Manager) replaceDead(ctx context.Context, view map[string]meta.Broker, p meta.Partition, from string, to meta.Broker) error {
	if err := m.brokers.removeMember(ctx, view, p, from); err != nil {
		return err
	}
	members := slices.DeleteFunc(slices.Clone(p.Replicas), func(r string) bool { return r == from })
	if err := m.brokers.createReplica(ctx, view, to, p, members); err != nil {
		return err
	}
	if err := m.brokers.addMember(ctx, view, p, to); err != nil {
		return err
	}
	_, err := m.apply(ctx, meta.MoveReplica{Topic: p.Topic, Partition: p.Index, From: from, To: to.ID})
	return err
}

// moveLive moves a replica off a broker that still serves it (decommission, balance)
// without ever leaving the partition below its replication factor: the new replica
// joins and catches up with the leader, leadership leaves the old one, and only then
// does the old one leave the group.
func (m *Manager) moveLive(ctx context.Context, view map[string]meta.Broker, p meta.Partition, from string, to meta.Broker) error {
	if err := m.brokers.createReplica(ctx, view, to, p, p.Replicas); err != nil {
		return err
	}
	if err := m.brokers.addMember(ctx, view, p, to); err != nil {
		return err
	}
	leader, err := m.caughtUp(ctx, view, p, to)
	if err != nil {
		return err
	}
	if leader == from {
		if err := m.brokers.transferLeader(ctx, view, p, to.ID); err != nil {
			return fmt.Errorf("hand leadership from %s to %s: %w", from, to.ID, err)
		}
	}
	if err := m.brokers.removeMember(ctx, view, p, from); err != nil {
		return err
	}
	// A replica left behind is deleted by the next survey (survey.go).
	_ = m.brokers.dropReplica(ctx, view[from], p)
	if _, err := m.apply(ctx, meta.MoveReplica{Topic: p.Topic, Partition: p.Index, From: from, To: to.ID}); err != nil {
		return err
	}
	if leader == from {
		_, err = m.apply(ctx, meta.SetLeader{Topic: p.Topic, Partition: p.Index, Leader: to.ID})
	}
	return err
}

// caughtUp waits until the replica on b holds the partition leader's whole Raft log as
// it was when asked (the configuration that added b included) and has applied what the
// leader had applied, and returns the leader's id. Applied alone said nothing of a
// partition that holds no message yet (0 on both sides): its leader then handed over to
// a member that had received nothing, and raft let it (see election.Node.canStand).
func (m *Manager) caughtUp(ctx context.Context, view map[string]meta.Broker, p meta.Partition, b meta.Broker) (string, error) {
	leader, err := m.brokers.replicaLeader(ctx, view, p)
	if err != nil {
		return "", err
	}
	var lead brokerapi.ReplicaStatus
	if lb, ok := view[leader]; ok {
		err = m.brokers.call(ctx, lb, http.MethodGet, replicaPath(p), nil, &lead)
	}
	if err != nil || !lead.IsLeader {
		return "", fmt.Errorf("partition %s has no leader to catch up with (named %q): %v", p.GroupName(), leader, err)
	}
	for {
		var st brokerapi.ReplicaStatus
		err := m.brokers.call(ctx, b, http.MethodGet, replicaPath(p), nil, &st)
		if err == nil && st.Applied >= lead.Applied && raftLast(st) >= raftLast(lead) {
			return leader, nil
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("replica on %s catching up to log index %d, applied %d (at %d, applied %d): %w",
				b.ID, raftLast(lead), lead.Applied, raftLast(st), st.Applied, ctx.Err())
		case <-time.After(catchUpPoll):
		}
	}
}

// raftLast is the last index of a replica's Raft log, or of its snapshot when the log
// holds nothing past it (a replica that caught up by snapshot).
func raftLast(st brokerapi.ReplicaStatus) uint64 { return max(st.LogLast, st.SnapshotIndex) }

// transferLeader hands a partition's leadership to another replica and records it.
func (m *Manager) transferLeader(ctx context.Context, t meta.Transfer) error {
	view := m.brokerView()
	var p meta.Partition
	m.store.Read(func(s *meta.State) {
		if tp, ok := s.Topics[t.Topic]; ok && t.Partition < len(tp.Partitions) {
			p = tp.Partitions[t.Partition]
			p.Replicas = slices.Clone(p.Replicas)
		}
	})
	if !p.Has(t.To) || view[t.To].State != meta.BrokerAlive {
		return errMoveStale
	}
	p.Leader = t.From // ask the leader the planner saw first
	if err := m.brokers.transferLeader(ctx, view, p, t.To); err != nil {
		return err
	}
	_, err := m.apply(ctx, meta.SetLeader{Topic: t.Topic, Partition: t.Partition, Leader: t.To})
	return err
}
