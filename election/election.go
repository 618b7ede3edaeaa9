// Package election is the Raft plumbing every quorumq group shares: a Node wraps
// hashicorp/raft with bolt storage, bootstrap-or-join, leadership changes as channels,
// Apply that a follower forwards to the leader, and linearizable reads. Every group of a
// process talks through one transport.Mux (one listener, shared connections).
package election

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/hashicorp/raft"

	"github.com/quorumq/quorumq/internal/transport"
)

var (
	// ErrNoLeader means the group had no reachable leader before the deadline, which is
	// what a lost quorum looks like from any member.
	ErrNoLeader = errors.New("election: no leader")
	// ErrNotLeader is returned by operations only the leader can serve locally.
	ErrNotLeader = errors.New("election: not the leader")
	// ErrAlreadyBootstrapped is returned by Bootstrap when the node already has Raft state.
	ErrAlreadyBootstrapped = errors.New("election: group already bootstrapped")
	// ErrUnknownOutcome means a command reached a leader that lost leadership (or the
	// connection to it) before answering: it may or may not have been applied. Apply does
	// not retry these, since a retry could apply the command twice.
	ErrUnknownOutcome = errors.New("election: command outcome unknown")
	// ErrClosed is returned after Close.
	ErrClosed = errors.New("election: node closed")
)

// Peer is one member of a group. Addr is the raft address of the member's process, which
// is the address of that process's transport.Mux.
type Peer struct {
	ID   string
	Addr string
}

// Timing holds the Raft timers of a group.
type Timing struct {
	HeartbeatTimeout   time.Duration
	ElectionTimeout    time.Duration
	LeaderLeaseTimeout time.Duration
	CommitTimeout      time.Duration
	SnapshotThreshold  uint64
	SnapshotInterval   time.Duration
	TrailingLogs       uint64
	// SnapshotBytes, if set, also snapshots once that many bytes of commands were
	// applied since the last such snapshot, without waiting for SnapshotInterval.
	SnapshotBytes uint64
	// SnapshotGap, if set, also snapshots once SnapshotThreshold entries were applied
	// since the last such snapshot, but no sooner than SnapshotGap after it. Raft's own
	// check is a timer per group that fires every SnapshotInterval whether or not
	// anything was written; with this it only catches what the last gap left, so
	// SnapshotInterval can be long and idle groups' timers rare.
	SnapshotGap time.Duration
}

// DefaultTiming suits a handful of groups that must fail over fast (ATM network,
// managers). A follower notices a dead leader after 0.5–1 s (raft randomizes between
// HeartbeatTimeout and twice that), and the election takes a round trip or two, so
// failover is typically about one second.
func DefaultTiming() Timing {
	return Timing{
		HeartbeatTimeout:   500 * time.Millisecond,
		ElectionTimeout:    500 * time.Millisecond,
		LeaderLeaseTimeout: 250 * time.Millisecond,
		CommitTimeout:      50 * time.Millisecond,
		SnapshotThreshold:  8192,
		SnapshotInterval:   30 * time.Second,
		TrailingLogs:       10240,
	}
}

// IdleTiming suits many groups per process (partitions), most of them idle. Raft sends a
// heartbeat to each follower every HeartbeatTimeout/10–/5, its leader checks its lease
// (a quorum's contact within LeaderLeaseTimeout) about every LeaderLeaseTimeout, each
// follower checks its leader every HeartbeatTimeout–2×, and an empty AppendEntries goes
// out every CommitTimeout: each is a timer per group that wakes the process whether or
// not anything is written, so all are stretched (measured with 1,000 idle partitions on
// 3 brokers: docs/benchmarks.md "Raft per partition"). The lease must outlast the
// longest gap between a live leader's heartbeats (HeartbeatTimeout/5 plus the
// transport's coalescing delay, about 1.9 s here), or leaders step down for nothing;
// under load the gap grows (the answers wait for a core), and with a 3 s lease,
// creating 10,000 partitions on five brokers sharing two cores made leaders step down
// by the hundred until most of the groups were electing at once; 4.5 s carried the
// same run through (docs/benchmarks.md). A
// follower alone notices a dead leader only after HeartbeatTimeout, so a process hosting
// many such groups needs its own failure detector to fail over sooner (the broker's
// pings, broker/nudge.go). The long CommitTimeout only delays when followers learn the
// commit index (their ReadBarrier and apply of the last entries of a burst), never a
// leader's commit.
func IdleTiming() Timing {
	return Timing{
		HeartbeatTimeout:   9 * time.Second,
		ElectionTimeout:    9 * time.Second,
		LeaderLeaseTimeout: 4500 * time.Millisecond,
		CommitTimeout:      5 * time.Second,
		SnapshotThreshold:  8192,
		SnapshotInterval:   5 * time.Minute,
		TrailingLogs:       10240,
	}
}

// Config describes one member of one group.
type Config struct {
	Group   string // e.g. "atm", "managers", "p/orders/3"
	ID      string // this member's server ID (a process id like "atm1", "b1")
	DataDir string // the group's directory: bolt log+stable store and snapshots, unless stores are given
	Mux     *transport.Mux
	// FSM's Apply must return []byte (the encoded result), nil, or an error value.
	FSM    raft.FSM
	Timing Timing // zero value means DefaultTiming

	// Membership at first start; ignored when the stores already hold Raft state.
	// Peers lists the initial members: every listed member bootstraps with this same set.
	// A node not among Peers joins the group through them instead.
	Peers []Peer
	// Fresh says the group is being created now: none of Peers has run it, so a member
	// among them bootstraps at once instead of first asking the others whether the group
	// already runs. That question costs a round trip per member (a median of 69 ms while
	// 2,000 topics were created on two cores, 0.9 s at the 99th percentile), and the
	// answer to a new group is known. A member told Fresh wrongly, of a group that has
	// since elected a leader, holds only its first entry and cannot win a vote against
	// the members that hold more; use Fresh only on a group's first open, never when
	// reopening or re-creating a member.
	Fresh bool
	// BootstrapExpect N with Discover: wait until Discover returns N peers (including this
	// one), then bootstrap with the first N of them sorted by ID; all members do the same.
	// If a discovered peer already belongs to a running group, join it instead.
	BootstrapExpect int
	// Discover lists candidate members; with BootstrapExpect 0 it is only used to find a
	// running group to join.
	Discover func(ctx context.Context) ([]Peer, error)

	// Optional stores, e.g. one bolt file shared by many groups. Stores given here are not
	// closed by Close; stores the node opens itself are.
	LogStore      raft.LogStore
	StableStore   raft.StableStore
	SnapshotStore raft.SnapshotStore

	// Rebuilt says why the caller dropped this member's state (damage it could not
	// repair): the member starts recovering (no vote, no lead) and enters its group as a
	// new member does, until it has caught up from a healthy leader.
	Rebuilt error

	Logger *slog.Logger
}
