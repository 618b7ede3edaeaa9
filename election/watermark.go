package election

import (
	"fmt"
	"time"
)

// A log that holds less than its member acknowledged must not vote: its vote could elect
// a leader that lacks entries the member helped commit. A store that checks itself
// (DamageReporter) says so when opened; for the others (raft-boltdb) the node records in
// the stable store how far its log reached, keyAcked, and compares at the next open.
//
// The record is written off the hot path, every watermarkEvery, so a log cut back by no
// more than what was appended in the last interval before a crash goes unnoticed. That
// window is the plain Raft of before: safe as long as the member that lost the entries is
// not the only one between a commit quorum and an election quorum that has them. Writing
// the record with every append would close it at the cost of a second sync per append.
var keyAcked = []byte("quorumq_acked")

const watermarkEvery = 250 * time.Millisecond

// checkWatermark compares the log with the record of what it held.
func (n *Node) checkWatermark(snapIndex uint64) error {
	acked, err := n.stable.GetUint64(keyAcked)
	if err != nil {
		return nil // not recorded yet
	}
	last, err := n.logs.LastIndex()
	if err != nil {
		return err
	}
	if max(last, snapIndex) < acked {
		return fmt.Errorf("the log ends at index %d (snapshot %d) but this member had acknowledged up to index %d", last, snapIndex, acked)
	}
	return nil
}

// keepWatermark records raft's last index (entries reach it once stored) whenever it
// moved. It may go down (a new leader replaced an uncommitted suffix), but not while the
// member recovers: a crash then must still find the log short of what was acknowledged.
func (n *Node) keepWatermark() {
	defer n.bg.Done()
	t := time.NewTicker(watermarkEvery)
	defer t.Stop()
	written, _ := n.stable.GetUint64(keyAcked)
	for closing := false; !closing; {
		select {
		case <-t.C:
		case <-n.ctx.Done():
			closing = true // a last record: Close waits for it before closing the stores
		}
		idx := n.Raft().LastIndex() // the current run's (restart.go)
		if idx == written || (idx < written && n.refuseElection() != nil) {
			continue
		}
		if err := n.stable.SetUint64(keyAcked, idx); err != nil {
			n.log.Warn("cannot record the log's last index", "error", err)
			continue
		}
		written = idx
	}
}
