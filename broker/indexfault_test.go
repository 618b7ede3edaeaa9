package broker_test

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// damageIndexEntries changes bytes inside the values of some of the message index
// entries of the partition in a stopped broker's data.db, where they are in the file
// (and in any stale copy of their page bolt left behind), as a bad disk would: those
// pick chooses among n entries. It returns the offsets of the damaged entries' first
// messages.
func damageIndexEntries(t *testing.T, dir string, pick func(n int) []int) []uint64 {
	t.Helper()
	path := filepath.Join(dir, "data.db")
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	var keys []uint64
	var values [][]byte
	err = db.View(func(tx *bolt.Tx) error {
		root := tx.Bucket([]byte("p/" + faultTopic + "/0"))
		if root == nil || root.Bucket([]byte("idx")) == nil {
			t.Fatal("no index for the partition in data.db")
		}
		return root.Bucket([]byte("idx")).ForEach(func(k, v []byte) error {
			keys, values = append(keys, binary.BigEndian.Uint64(k)), append(values, bytes.Clone(v))
			return nil
		})
	})
	db.Close()
	if err != nil || len(keys) < 3 {
		t.Fatalf("index entries %v: %v", keys, err)
	}
	file, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var damaged []uint64
	for _, i := range pick(len(keys)) {
		v := values[i]
		found := false
		for at := 0; ; {
			j := bytes.Index(file[at:], v)
			if j < 0 {
				break
			}
			flipBytes(t, path, int64(at+j+len(v)/2), 2)
			at, found = at+j+len(v), true
		}
		if !found {
			t.Fatalf("index entry %d not found in %s", keys[i], path)
		}
		damaged = append(damaged, keys[i])
	}
	return damaged
}

// TestIndexEntriesDamaged: index entries of one replica's data.db (where each run of
// messages is in the data log, their sizes and crcs) are damaged while it is stopped:
// the first, one in the middle and the last. verify reports them; once restarted the
// replica never serves those messages until it has fetched them again from another
// replica (logged, counted as index_checksum), then serves all of them, and leads with
// every body right.
func TestIndexEntriesDamaged(t *testing.T) {
	const n = 400
	c, cl, v := setupFaults(t, n, 10)
	c.procs[v].Kill()
	damaged := damageIndexEntries(t, c.dataDir(v), func(n int) []int { return []int{0, n / 2, n - 1} })
	out, ok := verifyOffline(t, c.dataDir(v))
	if ok || strings.Count(out, "index entry damaged") != len(damaged) {
		t.Fatalf("verify after damaging the index entries of messages %v (ok %v):\n%s", damaged, ok, out)
	}
	c.start(t, v)
	readAll(t, cl, c.peers[v].HTTPAddr, n)
	logs := c.procs[v].Output()
	if !strings.Contains(logs, "storage fault: damaged message index entries") || !strings.Contains(logs, "storage fault repaired") {
		t.Fatalf("%s did not log the damaged index and its repair", c.peers[v].ID)
	}
	if !strings.Contains(metricsOf(t, c, v), `quorumq_storage_faults_total{kind="index_checksum"}`) {
		t.Fatalf("%s's metrics count no index_checksum fault", c.peers[v].ID)
	}
	makeLeader(t, c, cl, v)
	consumeAll(t, cl, n)
	produceChecked(t, cl, n, 50, 10) // and it goes on
	readAll(t, cl, c.peers[v].HTTPAddr, n+50)
	stopAndVerify(t, c, v)
}
