package election

import (
	"errors"
	"fmt"
	"sync"
	"time"

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
	FaultRaftLogChecksum = "raft_log_checksum" // a bolt-stored raft entry failed its checksum
	FaultRaftLogShort    = "raft_log_shortened"
	FaultStableChecksum  = "stable_checksum" // a term or vote failed its checksum
	FaultLogStore        = "log_store"       // a DamageReporter store found damage when opened
)

// StorageFaults counts the storage faults found, by kind. It is process-wide; every
// service's registry (election/raftmetrics) exports it as quorumq_storage_faults_total.
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
	kick   chan struct{}
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

// refuseElection is the transport's election gate: non-nil while recovering.
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
	} else {
		n.rec.reason += "; " + reason
	}
	n.rec.mu.Unlock()
	n.log.Error("storage fault: this member takes no part in elections until it has caught up from a healthy leader", "fault", reason)
	select {
	case n.rec.kick <- struct{}{}:
	default:
	}
}
