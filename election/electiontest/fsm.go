package electiontest

import (
	"encoding/json"
	"errors"
	"io"
	"strconv"
	"sync"

	"github.com/hashicorp/raft"
)

// ErrRejected is what Recorder returns for the command "reject".
var ErrRejected = errors.New("electiontest: command rejected")

// Recorder is a test FSM that keeps every command it applies, in order. The command
// "reject" returns ErrRejected instead (and is not kept); any other returns the number of
// commands kept so far, in decimal.
type Recorder struct {
	mu      sync.Mutex
	entries []string
}

// NewRecorder is a newFSM for NewCluster.
func NewRecorder(string) raft.FSM { return &Recorder{} }

// Apply implements raft.FSM.
func (r *Recorder) Apply(l *raft.Log) any {
	cmd := string(l.Data)
	if cmd == "reject" {
		return ErrRejected
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.entries = append(r.entries, cmd)
	return []byte(strconv.Itoa(len(r.entries)))
}

// Entries returns a copy of the commands applied so far.
func (r *Recorder) Entries() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.entries...)
}

// Has reports whether cmd was applied.
func (r *Recorder) Has(cmd string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, e := range r.entries {
		if e == cmd {
			return true
		}
	}
	return false
}

// Snapshot implements raft.FSM.
func (r *Recorder) Snapshot() (raft.FSMSnapshot, error) {
	return recorderSnapshot(r.Entries()), nil
}

// Restore implements raft.FSM.
func (r *Recorder) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	var entries []string
	if err := json.NewDecoder(rc).Decode(&entries); err != nil {
		return err
	}
	r.mu.Lock()
	r.entries = entries
	r.mu.Unlock()
	return nil
}

type recorderSnapshot []string

func (s recorderSnapshot) Persist(sink raft.SnapshotSink) error {
	if err := json.NewEncoder(sink).Encode([]string(s)); err != nil {
		sink.Cancel()
		return err
	}
	return sink.Close()
}

func (recorderSnapshot) Release() {}
