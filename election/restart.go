package election

import (
	"fmt"
	"runtime"
	"strings"
	"sync"

	"github.com/hashicorp/raft"
)

// An entry that raft must apply and cannot read (its checksum failed, or it is gone)
// would make raft panic: its apply loop (processLogs) has no other answer to a log store
// error, and the panic takes every group of the process down. So the log store raft
// gets is wrapped: when such a read fails, the member enters recovery (no vote, no lead,
// see recovery.go), the reading goroutine parks, and the node restarts raft in-process
// on its log cut before that entry. The member has then lost entries it may have
// acknowledged, which is what recovery is for: it catches up from a healthy leader,
// whose AppendEntries (or snapshot) fill the log again. Reads that fail elsewhere keep
// their error, which raft handles (a leader sends a snapshot instead; a follower fails
// the AppendEntries).

// instance is one run of raft on the node's stores; restart replaces it.
type instance struct {
	raft     *raft.Raft    // set once ready is closed; nil if raft did not start
	ready    chan struct{} // closed once raft.NewRaft returned
	stopping chan struct{} // closed before a restart shuts this instance down
	once     sync.Once
}

// guardedLogs is the node's log store as raft sees it.
type guardedLogs struct {
	raft.LogStore
	n *Node
}

// GetLog implements raft.LogStore.
func (g guardedLogs) GetLog(idx uint64, l *raft.Log) error {
	err := g.LogStore.GetLog(idx, l)
	if err != nil && calledByApply() {
		g.n.unreadable(idx, err) // does not return
	}
	return err
}

// calledByApply reports whether raft's apply loop is the caller: the one place where
// raft answers a read error with a panic. It runs on raft's main goroutine or on the
// transport's heartbeat goroutine (a heartbeat can carry a new commit index).
func calledByApply() bool {
	var pcs [8]uintptr
	frames := runtime.CallersFrames(pcs[:runtime.Callers(3, pcs[:])])
	for {
		f, more := frames.Next()
		if strings.HasPrefix(f.Function, "github.com/hashicorp/raft.") && strings.HasSuffix(f.Function, ".processLogs") {
			return true
		}
		if !more {
			return false
		}
	}
}

// unreadable handles entry idx, which raft's apply loop could not read: it starts the
// restart (once per instance) and ends the calling goroutine once the instance is
// shutting down. raft's goroutines end so when raft shuts down; the transport's
// heartbeat goroutine leaves its other answers to the connection's next flush.
func (n *Node) unreadable(idx uint64, err error) {
	in := n.inst.Load()
	in.once.Do(func() {
		n.enterRecovery(fmt.Sprintf("raft log entry %d, committed and not yet applied, cannot be read: %v", idx, err))
		n.mu.Lock() // Close waits for bg only after closing done under mu
		defer n.mu.Unlock()
		select {
		case <-n.done:
		default:
			n.bg.Add(1)
			go n.restart(in, idx)
		}
	})
	select {
	case <-in.stopping:
	case <-n.done:
	}
	runtime.Goexit()
}

// restart shuts in down, cuts the log before idx and runs raft again.
func (n *Node) restart(in *instance, idx uint64) {
	defer n.bg.Done()
	n.log.Error("storage fault: a committed raft log entry cannot be read to apply it; restarting raft with the log cut before it, to recover the rest from a healthy leader",
		"index", idx)
	<-in.ready
	n.runMu.Lock()
	defer n.runMu.Unlock()
	close(in.stopping)
	if in.raft != nil {
		in.raft.Shutdown().Error()
	}
	n.setLeader(false)
	select {
	case <-n.done:
		return // closing
	default:
	}
	if last, err := n.logs.LastIndex(); err != nil {
		n.log.Error("storage fault: cannot read the log's end; raft stays stopped", "error", err)
		return
	} else if last >= idx {
		if err := n.logs.DeleteRange(idx, last); err != nil {
			n.log.Error("storage fault: cannot cut the log; raft stays stopped", "error", err)
			return
		}
	}
	n.fsm.kept.Store(n.fsm.applied.Load())
	if err := n.run(); err != nil {
		n.log.Error("storage fault: raft did not restart; this member stays out of the group", "error", err)
		return
	}
	n.log.Warn("storage fault: raft restarted without the unreadable entries", "cut_from", idx)
}

// raftTransport is the group transport as raft sees it: without Close, which raft calls
// when it shuts down, so that a restart keeps the transport (the node closes it).
type raftTransport struct {
	raft.Transport
	raft.WithPreVote
}
