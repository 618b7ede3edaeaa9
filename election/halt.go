package election

import (
	"errors"
	"time"

	"github.com/hashicorp/raft"
)

// CommandChecker is implemented by an FSM whose commands carry a type and a version.
// The node asks it about every command before the FSM sees it. A command this binary
// does not know was written by a newer one (a rolling upgrade done in the wrong order,
// or a new command version used before every member ran the new binary): applying it
// as a refusal, or skipping it, would leave this member's state different from the
// members that know it. So the node halts instead (see ErrHalted), as Consul's FSM
// panics, and the entry waits in the Raft log for the upgraded binary.
type CommandChecker interface {
	// CheckCommand returns an error naming what is unknown, or nil. It must depend on
	// the command alone. A command that is merely malformed is the FSM's to refuse, the
	// same way on every member: only unknown types and versions halt.
	CheckCommand(cmd []byte) error
}

// ErrHalted is returned by the writes and reads of a halted member, and is the FSM
// response of every entry it did not apply.
var ErrHalted = errors.New("election: member halted")

// Halted reports whether the member stopped applying the log, and why, for health
// checks. Only a restart (with a binary that knows the command) brings it back.
func (n *Node) Halted() (bool, string) {
	if err := n.fsm.halted(); err != nil {
		return true, err.Error()
	}
	return false, ""
}

// stopApplying is called by the FSM goroutine when the member halts: the FSM applies
// nothing more, takes no snapshot (raft would then drop the entries it skipped), and
// the member sits out elections; a leader hands leadership over.
func (n *Node) stopApplying(index uint64, err error) {
	n.log.Error("halted: the state machine met a command this binary does not know and stopped applying the log; upgrade this member's binary",
		"index", index, "error", err)
	go n.handOverLeadership()
}

// handOverLeadership transfers leadership away from a halted member, retrying while
// no other member can take it.
func (n *Node) handOverLeadership() {
	for {
		r := n.Raft()
		if r != nil && r.State() != raft.Leader {
			return
		}
		if r != nil {
			if err := wait(n.ctx, r.LeadershipTransfer()); err != nil {
				n.log.Warn("halted leader cannot hand leadership over; retrying", "error", err)
			}
		}
		if n.pause(n.ctx, time.Second) != nil {
			return
		}
	}
}

// sitOut is the gate on elections and on serving: non-nil while halted or recovering.
func (n *Node) sitOut() error {
	if err := n.fsm.halted(); err != nil {
		return err
	}
	return n.refuseElection()
}
