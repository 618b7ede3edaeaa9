package election

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
)

// DamageReporter is implemented by a raft.LogStore that checks itself when opened.
type DamageReporter interface {
	// Damage returns nil when the log holds, intact, everything this replica may have
	// acknowledged; otherwise what is wrong. The node then neither votes nor stands for
	// election until it has caught up from a healthy leader.
	Damage() error
}

// Kinds of storage fault, the values of StorageFaults' "kind" label.
const (
	FaultWALChecksum     = "wal_checksum"      // a WAL record failed its checksum
	FaultWALShortened    = "wal_shortened"     // the WAL holds less than was acknowledged
	FaultDataChecksum    = "data_checksum"     // a message body failed its checksum
	FaultIndexChecksum   = "index_checksum"    // a message index entry failed its checksum
	FaultRaftLogChecksum = "raft_log_checksum" // a bolt-stored raft entry failed its checksum
	FaultRaftLogShort    = "raft_log_shortened"
	FaultStableChecksum  = "stable_checksum" // a term or vote failed its checksum
	FaultLogStore        = "log_store"       // a DamageReporter store found damage when opened
	FaultStateChecksum   = "state_checksum"  // an FSM's stored state failed its checksum (the replica is rebuilt)
	FaultUnrepairable    = "unrepairable"    // damaged messages no other replica could give back (the replica is rebuilt)
)

// StorageFaults counts the storage faults found, by kind. It is process-wide; every
// service's registry (internal/raftmetrics) exports it as quorumq_storage_faults_total.
var StorageFaults = prometheus.NewCounterVec(prometheus.CounterOpts{
	Name: "quorumq_storage_faults_total",
	Help: "Storage faults found on this process's replicas (checksum failures, logs shorter than what they acknowledged), by kind.",
}, []string{"kind"})

// ErrRecovering is returned by reads and writes that a recovering member may not serve.
var ErrRecovering = errors.New("election: member is recovering from a storage fault")

// recovery is a node's storage-fault state. While recovering the node grants no vote,
// does not campaign (its transport refuses both, see transport.GroupTransport.
// SetElectionGate), and serves no linearizable read, until catchUp has seen its log reach
// a healthy leader's.
type recovery struct {
	mu     sync.Mutex
	reason string    // "" when healthy
	since  time.Time // when the current recovery began
	wait   string    // what catchUp waits for
	// recoveryLoop's runs: kicked says a fault was reported since the loop last
	// looked, running that the loop runs, started that raft runs (Open finished).
	kicked, running, started bool
}

// ReportDamage puts the node into the recovering state for damage found while running
// (by a scrub or a read): kind is a StorageFaults label value, err says what is wrong. A
// leader first hands leadership to another member.
func (n *Node) ReportDamage(kind string, err error) {
	StorageFaults.WithLabelValues(kind).Inc()
	n.enterRecovery(fmt.Sprintf("%s: %v", kind, err))
}

// Recovering reports whether the node is recovering from a storage fault, and why (what
// was found, since when, and what it waits for), for health checks.
func (n *Node) Recovering() (bool, string) {
	n.rec.mu.Lock()
	defer n.rec.mu.Unlock()
	if n.rec.reason == "" {
		return false, ""
	}
	return true, fmt.Sprintf("recovering since %s from a storage fault (%s); takes no part in elections until caught up from a healthy leader; now: %s",
		n.rec.since.UTC().Format(time.RFC3339), n.rec.reason, n.rec.wait)
}

// refuseElection is non-nil while recovering (one half of sitOut, the election gate).
func (n *Node) refuseElection() error {
	n.rec.mu.Lock()
	defer n.rec.mu.Unlock()
	if n.rec.reason == "" {
		return nil
	}
	return fmt.Errorf("%w: %s", ErrRecovering, n.rec.reason)
}

// enterRecovery starts (or extends) a recovery.
func (n *Node) enterRecovery(reason string) {
	n.rec.mu.Lock()
	first := n.rec.reason == ""
	if first {
		n.rec.reason, n.rec.since, n.rec.wait = reason, time.Now(), "starting"
	} else if !strings.Contains(n.rec.reason, reason) {
		n.rec.reason += "; " + reason
	}
	n.rec.mu.Unlock()
	n.log.Error("storage fault: this member takes no part in elections until it has caught up from a healthy leader", "fault", reason)
	n.kickRecovery()
}

// checkStores looks for damage before raft starts: a store that checks itself says what
// it found; otherwise the log must reach what the member acknowledged, and a bolt log
// the node opened is read through once (see checkedLogs.check).
func (n *Node) checkStores() error {
	if n.cfg.Rebuilt != nil {
		n.enterRecovery(fmt.Sprintf("state dropped and rebuilt from the group after a storage fault: %v", n.cfg.Rebuilt))
	}
	var snapIndex uint64
	if metas, err := n.snaps.List(); err == nil && len(metas) > 0 {
		snapIndex = metas[0].Index
	}
	if cs, ok := n.stable.(*checkedStable); ok {
		if err := cs.check(); err != nil {
			return fmt.Errorf("election: seal the stable store: %w", err)
		}
		// With a bolt log, the mark waits until the log is sealed too (checkedLogs.check).
		if _, bolt := n.logs.(*checkedLogs); !bolt && !cs.strict {
			if err := cs.markSealed(); err != nil {
				return fmt.Errorf("election: seal the stable store: %w", err)
			}
		}
	}
	if dr, ok := n.logs.(DamageReporter); ok {
		if err := dr.Damage(); err != nil {
			n.ReportDamage(FaultLogStore, err)
		}
		return nil
	}
	if err := n.checkWatermark(snapIndex); err != nil {
		n.ReportDamage(FaultRaftLogShort, err)
	}
	if cl, ok := n.logs.(*checkedLogs); ok {
		cut, err := cl.check(n.rawStable, snapIndex, n.log)
		if err != nil {
			return fmt.Errorf("election: check the raft log: %w", err)
		}
		if cut != nil {
			n.ReportDamage(FaultRaftLogChecksum, cut)
		}
	}
	return nil
}

// logDamage handles an entry of the node's own bolt log that failed its checksum while
// raft ran. An entry already applied is committed and in the FSM: a snapshot covers it,
// after which the log up to it can go (a follower that needs it gets the snapshot), and
// nothing this member acknowledged is lost. Any later entry makes the member recover.
func (n *Node) logDamage(idx uint64, err error) {
	if n.badEntry.Swap(idx) == idx {
		return // raft retries what needed it; handled already
	}
	r := n.Raft()
	if r == nil || idx > r.AppliedIndex() {
		n.ReportDamage(FaultRaftLogChecksum, err)
		return
	}
	StorageFaults.WithLabelValues(FaultRaftLogChecksum).Inc()
	go func() {
		if serr := n.dropThrough(r, idx); serr != nil {
			n.ReportDamage(FaultRaftLogChecksum, fmt.Errorf("%w (and the log could not be cut up to it: %v)", err, serr))
			return
		}
		n.log.Warn("storage fault: a damaged raft log entry was already applied; snapshotted and dropped the log up to it", "error", err)
	}()
}

// dropThrough snapshots the FSM past idx and deletes the log up to idx.
func (n *Node) dropThrough(r *raft.Raft, idx uint64) error {
	if err := r.Snapshot().Error(); err != nil && !errors.Is(err, raft.ErrNothingNewToSnapshot) {
		return err
	}
	metas, err := n.snaps.List()
	if err != nil || len(metas) == 0 || metas[0].Index < idx {
		return fmt.Errorf("no snapshot covers index %d (%v)", idx, err)
	}
	first, err := n.logs.FirstIndex()
	if err != nil {
		return err
	}
	return n.logs.DeleteRange(first, idx)
}
