package election

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/raft"
)

// methodCatchUp asks the leader for the point a recovering member must reach.
const methodCatchUp = "catchup"

// recoveryLoop brings the node out of recovery and ends once no recovery is pending;
// kickRecovery starts it. Not one per node for its whole life: a broker holds
// thousands of nodes, and every idle goroutine is a stack the collector scans.
func (n *Node) recoveryLoop() {
	for n.nextRecovery() {
		for n.refuseElection() != nil {
			err := n.catchUp()
			if err == nil {
				n.leaveRecovery()
				break
			}
			n.waitingFor(err.Error())
			if n.pause(n.ctx, time.Second) != nil {
				break // closing: nextRecovery ends the loop
			}
		}
	}
}

// kickRecovery asks recoveryLoop to run, starting it unless it runs already (or Open
// has not started raft yet: startRecovery does then).
func (n *Node) kickRecovery() {
	n.rec.mu.Lock()
	defer n.rec.mu.Unlock()
	n.rec.kicked = true
	n.spawnRecoveryLocked()
}

// startRecovery, once raft runs, lets kickRecovery start recoveryLoop, and starts it
// for a fault found while the node opened.
func (n *Node) startRecovery() {
	n.rec.mu.Lock()
	defer n.rec.mu.Unlock()
	n.rec.started = true
	if n.rec.kicked {
		n.spawnRecoveryLocked()
	}
}

func (n *Node) spawnRecoveryLocked() {
	if n.rec.started && !n.rec.running {
		n.rec.running = true
		go n.recoveryLoop()
	}
}

// nextRecovery takes a pending kick, or marks the loop ended when there is none or the
// node is closing.
func (n *Node) nextRecovery() bool {
	n.rec.mu.Lock()
	defer n.rec.mu.Unlock()
	if !n.rec.kicked || n.ctx.Err() != nil {
		n.rec.running = false
		return false
	}
	n.rec.kicked = false
	return true
}

// catchUp returns once this member's log holds everything it may have acknowledged
// before the fault, or says what it is still missing.
//
// Why this is enough to vote again: it waits until it has applied the log of a leader
// L, confirmed as leader of the current term by a majority, up to L's last index as read
// after the fault was found. Every entry committed before then is in L's log at or below
// that index: entries of earlier terms by Leader Completeness, entries of L's term
// because L created them. (Not L's commit index: a leader that acknowledged an entry
// with this member's help may not have counted it yet, and a new leader's commit index
// trails until an entry of its term commits.) Whatever this member acknowledged and lost
// was committed, if at all, before the fault was found, so it is back; what it
// acknowledges from now on it really holds. Applied, not just stored: raft applies only
// entries that match the leader's, while a stored suffix from an older term may still
// differ. A leader change while waiting starts over with the new leader.
func (n *Node) catchUp() error {
	r := n.Raft()
	if r.State() == raft.Leader {
		// A damaged leader hands over first; raft picks the most up-to-date voter, which
		// refuses the handover if it is recovering too. Bounded: an instance being
		// restarted (restart.go) never answers the transfer, its main goroutine gone.
		ctx, cancel := context.WithTimeout(n.ctx, 10*time.Second)
		err := wait(ctx, r.LeadershipTransfer())
		cancel()
		if err != nil {
			return fmt.Errorf("leads the group and cannot hand leadership to a healthy member (%v); the group serves nothing until one can take over", err)
		}
	}
	ctx, cancel := context.WithTimeout(n.ctx, 10*time.Second)
	res, err := n.onLeader(ctx, op{method: methodCatchUp, idempotent: true, local: n.catchUpLocal})
	cancel()
	if err != nil {
		return fmt.Errorf("waiting for a healthy leader (a majority of healthy members must be up): %w", err)
	}
	if len(res) != 16 {
		return fmt.Errorf("bad catch-up reply (%d bytes)", len(res))
	}
	term, target := binary.BigEndian.Uint64(res), binary.BigEndian.Uint64(res[8:])
	n.waitingFor(fmt.Sprintf("catching up to index %d of the term-%d leader (applied %d)", target, term, r.AppliedIndex()))
	for d := time.Millisecond; r.AppliedIndex() < target; d = min(2*d, 100*time.Millisecond) {
		if r.CurrentTerm() > term {
			return errors.New("the leader changed while catching up")
		}
		if n.Raft() != r {
			return errors.New("raft restarted while catching up")
		}
		if err := n.pause(n.ctx, d); err != nil {
			return err
		}
	}
	return nil
}

// catchUpLocal answers methodCatchUp on the leader: its term and last index, read before
// a majority confirms it still leads (the read-index argument: no later leader can have
// committed anything it lacks).
func (n *Node) catchUpLocal(ctx context.Context) ([]byte, error) {
	if err := n.sitOut(); err != nil {
		return nil, err // a damaged or halted leader is no reference
	}
	r := n.Raft()
	term, last := r.CurrentTerm(), r.LastIndex()
	if err := wait(ctx, r.VerifyLeader()); err != nil {
		return nil, classify(err, false)
	}
	return binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(nil, term), last), nil
}

// waitingFor records (and logs, when it changes) what a recovery waits for.
func (n *Node) waitingFor(what string) {
	n.rec.mu.Lock()
	changed := n.rec.wait != what
	n.rec.wait = what
	n.rec.mu.Unlock()
	if changed {
		n.log.Warn("storage fault recovery: still sitting out elections", "waiting_for", what)
	}
}

func (n *Node) leaveRecovery() {
	n.rec.mu.Lock()
	reason, since := n.rec.reason, n.rec.since
	n.rec.reason, n.rec.wait = "", ""
	n.rec.mu.Unlock()
	n.log.Info("storage fault recovery: caught up from a healthy leader; votes and stands for election again",
		"fault", reason, "took", time.Since(since).Round(time.Millisecond))
}
