package broker

import (
	"context"
	"time"

	"github.com/quorumq/quorumq/broker/partition"
)

// Retention (issue 15): each partition's leader checks, every Config.RetentionInterval,
// which prefix its topic's retention deletes, and proposes a partition.Truncate with that
// offset through the partition's Raft log, so every replica deletes the same messages
// whatever its clock or its progress: the time limit is turned into an offset here, on
// the leader, from the stamps its store keeps of when each entry was proposed, and
// never in Apply. The store frees the disk the messages took at once (punched holes in
// the data log); the Raft log holds their entries until the next snapshot, which comes
// after SnapshotBytes of traffic or SnapshotThreshold entries (PartitionTiming).

// DefaultRetentionInterval is the default Config.RetentionInterval.
const DefaultRetentionInterval = 10 * time.Second

// retention is a replica's topic retention: milliseconds and bytes, 0 for no limit.
type retention struct {
	ms, bytes int64
}

func (r *replica) setRetention(ret retention) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ret = ret
}

func (r *replica) retention() retention {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.ret
}

// retentionLoop enforces retention on the partitions this broker leads until ctx ends.
func (b *Broker) retentionLoop(ctx context.Context) {
	t := time.NewTicker(b.cfg.RetentionInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for _, r := range b.allReplicas() {
			if ctx.Err() != nil {
				return
			}
			if err := r.enforceRetention(ctx, time.Now()); err != nil {
				b.log.Warn("retention", "group", r.group, "err", err)
			}
		}
	}
}

// enforceRetention proposes the truncation retention asks for at now, if this replica
// leads and there is something to delete.
func (r *replica) enforceRetention(ctx context.Context, now time.Time) error {
	ret := r.retention()
	if ret == (retention{}) || !r.node.IsLeader() {
		return nil
	}
	start, next := r.fsm.Bounds()
	_, _, bytes, _ := r.fsm.Info()
	var olderThan int64
	if ret.ms > 0 {
		olderThan = now.UnixMilli() - ret.ms
	}
	before, err := r.store.Cutoff(start, next, bytes, olderThan, uint64(ret.bytes))
	if err != nil || before <= start {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, applyTimeout)
	defer cancel()
	_, err = r.node.Apply(ctx, partition.EncodeTruncate(partition.Truncate{Before: before, At: now.UnixMilli()}))
	return err
}
