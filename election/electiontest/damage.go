package electiontest

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
)

// Dir is node i's data directory.
func (c *Cluster) Dir(i int) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.dirs[i]
}

// CutLog removes the newest n entries of the raft log in dir, a stopped node's data
// directory, as a lost write or a restored backup would: everything else, the record
// of what the node acknowledged included, stays.
func CutLog(t testing.TB, dir string, n uint64) {
	t.Helper()
	s, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(dir, "raft.db")})
	if err != nil {
		t.Fatalf("electiontest: open %s: %v", dir, err)
	}
	defer s.Close()
	last, err := s.LastIndex()
	if err != nil || last <= n {
		t.Fatalf("electiontest: cut %d entries of a log ending at %d: %v", n, last, err)
	}
	if err := s.DeleteRange(last-n+1, last); err != nil {
		t.Fatalf("electiontest: cut %s: %v", dir, err)
	}
}

// FlipBits inverts one byte in the middle of every copy of marker in the raft log file
// in dir, as a disk's bit rot would. It works on a running node too: bolt reads its file
// through a shared mapping, which sees the write. It fails the test when marker is not
// in the file.
func FlipBits(t testing.TB, dir string, marker []byte) {
	t.Helper()
	path := filepath.Join(dir, "raft.db")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("electiontest: %v", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatalf("electiontest: %v", err)
	}
	defer f.Close()
	found := 0
	for off := 0; ; {
		i := bytes.Index(b[off:], marker)
		if i < 0 {
			break
		}
		at := off + i + len(marker)/2
		if _, err := f.WriteAt([]byte{^b[at]}, int64(at)); err != nil {
			t.Fatalf("electiontest: %v", err)
		}
		found++
		off = at + 1
	}
	if found == 0 {
		t.Fatalf("electiontest: %q is not in %s", marker, path)
	}
}
