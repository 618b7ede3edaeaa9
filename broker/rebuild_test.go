package broker_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/quorumq/quorumq/broker/brokerapi"
)

// TestDamagedStateRebuilt: a follower's partition state in data.db (applied index, next
// offset) fails its checksum at start. No peer can repair it piece by piece, so the
// broker drops the replica's data and it rejoins, empty and recovering, to be rebuilt
// by the healthy leader: afterwards it holds every acknowledged message and the
// consumer's offset, and leads with them.
func TestDamagedStateRebuilt(t *testing.T) {
	const n = 200
	c, cl, v := setupFaults(t, n, 10)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := cl.Register(ctx, faultTopic, 0, "keep"); err != nil {
		t.Fatal(err)
	}
	if r, err := cl.Consume(ctx, faultTopic, 0, "keep", 0, 50); err != nil || len(r.Messages) != 50 {
		t.Fatalf("consume 50: %d messages, %v", len(r.Messages), err)
	}
	leader, err := cl.Status(ctx, c.peers[c.index(waitLeader(t, cl, faultTopic, 0))].HTTPAddr, faultTopic, 0)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the consume applied on V", func() bool {
		st, err := cl.Status(ctx, c.peers[v].HTTPAddr, faultTopic, 0)
		return err == nil && st.Applied >= leader.Applied
	})
	time.Sleep(500 * time.Millisecond) // data.db commits every 100 ms
	c.procs[v].Kill()
	flipAfter(t, filepath.Join(c.dataDir(v), "data.db"), []byte("state"), 3)

	c.start(t, v)
	readAll(t, cl, c.peers[v].HTTPAddr, n)
	waitFor(t, "V to finish recovering", func() bool {
		st, err := cl.Status(ctx, c.peers[v].HTTPAddr, faultTopic, 0)
		return err == nil && len(st.Damage) == 0 && st.Next == n
	})
	out := c.procs[v].Output()
	if !strings.Contains(out, "partition state damaged; rebuilding the replica") || !strings.Contains(out, "replica state dropped; rejoining the group") {
		t.Fatalf("%s did not log the rebuild", c.peers[v].ID)
	}
	if !strings.Contains(metricsOf(t, c, v), `quorumq_storage_faults_total{kind="state_checksum"} 1`) {
		t.Fatalf("%s's metrics count no state_checksum fault", c.peers[v].ID)
	}
	// V, leading, has the consumer at offset 50 and every body.
	makeLeader(t, c, cl, v)
	var r brokerapi.ConsumeReply
	waitFor(t, "a consume through V", func() bool { // a restarted broker may still be reopening
		r, err = cl.Consume(ctx, faultTopic, 0, "keep", 50, 10)
		return err == nil
	})
	if len(r.Messages) != 10 || r.Offset != 50 || !bodyOK(r.Messages[0], 50) {
		t.Fatalf("consume after the rebuild: offset %d, %d messages", r.Offset, len(r.Messages))
	}
	consumeAll(t, cl, n)
}

// flipAfter flips byte skip of what follows each occurrence of marker in the file.
func flipAfter(t *testing.T, path string, marker []byte, skip int) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	found := 0
	for off := 0; ; {
		i := bytes.Index(b[off:], marker)
		if i < 0 {
			break
		}
		at := off + i + len(marker) + skip
		b[at] ^= 0x40
		found++
		off = at + 1
	}
	if found == 0 {
		t.Fatalf("%q is not in %s", marker, path)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestWALDamagedBeforeApply: a follower restarts while the others are paused, so that
// it has opened (and checked) its WAL but applied nothing yet; a record then gets
// damaged on disk. When the others resume and raft comes to apply that record, the
// broker does not crash (raft used to panic): the partition's raft restarts in-process
// without the damaged part of the log, and the replica catches up from the leader.
func TestWALDamagedBeforeApply(t *testing.T) {
	const n = 400
	c, cl, v := setupFaults(t, n, 10)
	others := []int{(v + 1) % 3, (v + 2) % 3}
	c.procs[v].Kill()
	for _, i := range others {
		if err := c.procs[i].Signal(syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
	}
	c.start(t, v)
	waitFor(t, "V's replica open", func() bool {
		_, err := cl.Status(context.Background(), c.peers[v].HTTPAddr, faultTopic, 0)
		return err == nil
	})
	path, end := newestWAL(t, c, v)
	flipBytes(t, path, end/2, 4)
	for _, i := range others {
		if err := c.procs[i].Signal(syscall.SIGCONT); err != nil {
			t.Fatal(err)
		}
	}
	c.procs[v].WaitOutput(t, "restarting raft with the log cut before it", 2*time.Minute)
	readAll(t, cl, c.peers[v].HTTPAddr, n)
	var damage []string
	defer func() {
		if t.Failed() {
			t.Logf("%s's damage: %q", c.peers[v].ID, damage)
		}
	}()
	waitFor(t, "V to finish recovering", func() bool {
		st, err := cl.Status(context.Background(), c.peers[v].HTTPAddr, faultTopic, 0)
		damage = st.Damage
		return err == nil && len(st.Damage) == 0
	})
	select {
	case <-c.procs[v].Done():
		t.Fatalf("%s exited", c.peers[v].ID)
	default:
	}
	makeLeader(t, c, cl, v)
	consumeAll(t, cl, n)
}
