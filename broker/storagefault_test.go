package broker_test

import (
	"context"
	"fmt"
	"hash/crc32"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/quorumq/quorumq/broker/brokerapi"
	"github.com/quorumq/quorumq/cmd/quorumq/proctest"
	"github.com/quorumq/quorumq/internal/brokerclient"
)

// The storage-fault tests damage one replica's files themselves, as a bad disk would,
// and check that no acknowledged message is lost and no wrong body is ever served, by
// consume or by read-by-offset. Every body says what it must be: its sequence number
// and the crc of the rest.

const faultTopic = "faults"

func checkedBody(seq int) string {
	head := fmt.Sprintf("seq=%06d %s", seq, strings.Repeat(string(rune('a'+seq%26)), 1000))
	return fmt.Sprintf("%s crc=%08x", head, crc32.ChecksumIEEE([]byte(head)))
}

// binaryBody is checkedBody behind bytes that are not UTF-8 (which a JSON string
// cannot carry).
func binaryBody(seq int) string { return "\xff\xfe" + checkedBody(seq) }

// bodyOK reports whether m is the body of message seq.
func bodyOK(m string, seq int) bool { return m == checkedBody(seq) }

// produceChecked produces messages [from, from+n) through the leader in batches of
// batch messages (one producer: a test always uses the same batch size).
func produceChecked(t *testing.T, cl *brokerclient.Client, from, n, batch int) {
	t.Helper()
	produceBodies(t, cl, from, n, batch, checkedBody)
}

// produceBodies is produceChecked with the bodies body makes.
func produceBodies(t *testing.T, cl *brokerclient.Client, from, n, batch int, body func(int) string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for seq := from; seq < from+n; seq += batch {
		var msgs []string
		for i := seq; i < seq+batch && i < from+n; i++ {
			msgs = append(msgs, body(i))
		}
		for {
			r, err := cl.Produce(ctx, faultTopic, 0, "checker", uint64(seq/batch+1), msgs)
			if err == nil {
				if r.Offset != uint64(seq) {
					t.Fatalf("batch of message %d acknowledged at offset %d", seq, r.Offset)
				}
				break
			}
			if ctx.Err() != nil {
				t.Fatalf("produce %d: %v", seq, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
}

// readAll reads messages [0, n) from the broker at addr by offset, retrying errors
// (a damaged body is refused until it is repaired) until the deadline; every body it
// gets must be right, byte for byte.
func readAll(t *testing.T, cl *brokerclient.Client, addr string, n int) {
	t.Helper()
	readBodies(t, cl, addr, n, checkedBody)
}

// readBodies is readAll for the bodies body makes.
func readBodies(t *testing.T, cl *brokerclient.Client, addr string, n int, body func(int) string) {
	t.Helper()
	readRange(t, cl, addr, 0, n, body)
}

// readRange is readBodies for messages [from, to).
func readRange(t *testing.T, cl *brokerclient.Client, addr string, from, to int, body func(int) string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	var lastErr error
	for off := from; off < to; {
		var r brokerapi.ReadAtRawReply
		err := cl.Do(ctx, http.MethodGet, addr, fmt.Sprintf("/replicas/%s/0/messages?offset=%d&max=100&encoding=base64", faultTopic, off), nil, &r)
		if err == nil && len(r.Messages) == 0 {
			err = fmt.Errorf("no message at %d (end %d)", off, r.End)
		}
		if err != nil {
			if ctx.Err() != nil {
				t.Fatalf("read-by-offset from %s stuck at %d: %v (before: %v)", addr, off, err, lastErr)
			}
			lastErr = err
			time.Sleep(100 * time.Millisecond)
			continue
		}
		for i, m := range r.Messages {
			if string(m) != body(off+i) {
				t.Fatalf("read-by-offset from %s served a wrong body at offset %d: %.40q", addr, off+i, m)
			}
		}
		off += len(r.Messages)
	}
}

// consumeAll consumes every message as a new consumer, through the leader, retrying
// refusals with the same offset.
func consumeAll(t *testing.T, cl *brokerclient.Client, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	consumer := fmt.Sprintf("c%d", time.Now().UnixNano())
	for {
		if _, err := cl.Register(ctx, faultTopic, 0, consumer); err == nil {
			break
		} else if ctx.Err() != nil {
			t.Fatalf("register: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	for off := 0; off < n; {
		r, err := cl.Consume(ctx, faultTopic, 0, consumer, uint64(off), 100)
		if err != nil {
			if ctx.Err() != nil {
				t.Fatalf("consume stuck at %d: %v", off, err)
			}
			time.Sleep(100 * time.Millisecond)
			continue
		}
		if len(r.Messages) == 0 {
			t.Fatalf("consume: nothing at offset %d of %d", off, n)
		}
		for i, m := range r.Messages {
			if !bodyOK(m, off+i) {
				t.Fatalf("consume served a wrong body at offset %d: %.40q", off+i, m)
			}
		}
		off += len(r.Messages)
	}
}

// waitStored waits until every broker in idx has stored n messages, and a little more
// for its data log commit.
func waitStored(t *testing.T, c *cluster, cl *brokerclient.Client, n int, idx ...int) {
	t.Helper()
	for _, i := range idx {
		waitFor(t, fmt.Sprintf("%s stores %d messages", c.peers[i].ID, n), func() bool {
			st, err := cl.Status(context.Background(), c.peers[i].HTTPAddr, faultTopic, 0)
			return err == nil && st.Next >= uint64(n)
		})
	}
	time.Sleep(500 * time.Millisecond) // data.db commits every 100 ms
}

func dataSegment(t *testing.T, c *cluster, i int) string {
	t.Helper()
	names, _ := filepath.Glob(filepath.Join(c.dataDir(i), "data", "data-*.seg"))
	if len(names) != 1 {
		t.Fatalf("data log segments of %s: %v", c.peers[i].ID, names)
	}
	return names[0]
}

func flipBytes(t *testing.T, path string, at int64, n int) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, n)
	if _, err := f.ReadAt(b, at); err != nil {
		t.Fatal(err)
	}
	for i := range b {
		b[i] ^= 0x5a
	}
	if _, err := f.WriteAt(b, at); err != nil {
		t.Fatal(err)
	}
}

// verifyOffline runs quorumq broker verify on a stopped broker's files.
func verifyOffline(t *testing.T, dir string) (string, bool) {
	t.Helper()
	out, err := exec.Command(proctest.Binary(t), "broker", "verify", "--data-dir", dir).CombinedOutput()
	if _, exit := err.(*exec.ExitError); err != nil && !exit {
		t.Fatal(err)
	}
	return string(out), err == nil
}

// stopAndVerify stops broker v and fails t unless `quorumq broker verify` then finds its
// data directory whole: what the broker repaired is on disk, not only in its answers.
func stopAndVerify(t *testing.T, c *cluster, v int) {
	t.Helper()
	c.procs[v].Stop()
	if out, ok := verifyOffline(t, c.dataDir(v)); !ok {
		t.Fatalf("verify once repaired:\n%s", out)
	}
}

// makeLeader kills leaders (restarting them) until broker i leads the partition.
func makeLeader(t *testing.T, c *cluster, cl *brokerclient.Client, i int) {
	t.Helper()
	for range 10 {
		l := c.index(waitLeader(t, cl, faultTopic, 0))
		if l == i {
			return
		}
		c.procs[l].Kill()
		waitFor(t, "a new leader", func() bool {
			for j, p := range c.peers {
				if j == l {
					continue
				}
				if st, err := cl.Status(context.Background(), p.HTTPAddr, faultTopic, 0); err == nil && st.IsLeader {
					return true
				}
			}
			return false
		})
		c.start(t, l)
	}
	t.Fatalf("%s never became the leader", c.peers[i].ID)
}

// setupFaults starts 3 brokers, a partition on all of them, and n acknowledged
// messages (in batches of batch) stored everywhere; it returns the cluster and a
// follower's index.
func setupFaults(t *testing.T, n, batch int) (*cluster, *brokerclient.Client, int) {
	return setupBodies(t, n, batch, checkedBody)
}

// setupBodies is setupFaults with the bodies body makes.
func setupBodies(t *testing.T, n, batch int, body func(int) string) (*cluster, *brokerclient.Client, int) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	c := startCluster(t, 3)
	cl := c.client()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := cl.CreatePartition(ctx, faultTopic, 0, c.peers); err != nil {
		t.Fatal(err)
	}
	leader := c.index(waitLeader(t, cl, faultTopic, 0))
	produceBodies(t, cl, 0, n, batch, body)
	waitStored(t, c, cl, n, 0, 1, 2)
	return c, cl, (leader + 1) % 3
}

// TestDataLogBitFlip (row 4): 4 bytes flipped in one replica's data log. The replica
// never serves the damaged body, repairs it from another replica, and verify reports
// the damage while the broker is stopped.
func TestDataLogBitFlip(t *testing.T) {
	const n = 400
	c, cl, v := setupFaults(t, n, 10)
	c.procs[v].Kill()
	seg := dataSegment(t, c, v)
	flipBytes(t, seg, int64(n/2*len(checkedBody(0))+100), 4)
	if out, ok := verifyOffline(t, c.dataDir(v)); ok || !strings.Contains(out, "DAMAGED data: p/faults/0: messages 200 to 200") {
		t.Fatalf("verify after the flip (ok %v):\n%s", ok, out)
	}
	c.start(t, v)
	readAll(t, cl, c.peers[v].HTTPAddr, n)
	checkFaultSeen(t, c, v)
	makeLeader(t, c, cl, v)
	consumeAll(t, cl, n)
	stopAndVerify(t, c, v)
}

// TestDataLogBitFlipNotUTF8: as TestDataLogBitFlip, with bodies that are not UTF-8:
// the repair fetches them from another replica byte for byte.
func TestDataLogBitFlipNotUTF8(t *testing.T) {
	const n = 200
	c, cl, v := setupBodies(t, n, 10, binaryBody)
	c.procs[v].Kill()
	flipBytes(t, dataSegment(t, c, v), int64(n/2*len(binaryBody(0))+100), 4)
	c.start(t, v)
	readBodies(t, cl, c.peers[v].HTTPAddr, n, binaryBody)
	checkFaultSeen(t, c, v)
	stopAndVerify(t, c, v)
}

// TestDataLogTruncated (row 3): the newest data log segment of one replica loses its
// last 16 KiB (and is extended with zeros at the next start); the replica then leads.
// No message is served as zeros, and all are repaired.
func TestDataLogTruncated(t *testing.T) {
	const n = 400
	c, cl, v := setupFaults(t, n, 10)
	c.procs[v].Kill()
	end := int64(n * len(checkedBody(0)))
	if err := os.Truncate(dataSegment(t, c, v), end-16<<10); err != nil {
		t.Fatal(err)
	}
	c.start(t, v)
	makeLeader(t, c, cl, v)
	consumeAll(t, cl, n)
	readAll(t, cl, c.peers[v].HTTPAddr, n)
	checkFaultSeen(t, c, v)
	produceChecked(t, cl, n, 50, 10) // and it goes on
	readAll(t, cl, c.peers[v].HTTPAddr, n+50)
}

// checkFaultSeen checks that broker i logged, counted and repaired a damaged body.
func checkFaultSeen(t *testing.T, c *cluster, i int) {
	t.Helper()
	out := c.procs[i].Output()
	if !strings.Contains(out, "storage fault: damaged message bodies") || !strings.Contains(out, "storage fault repaired") {
		t.Fatalf("%s did not log the damage and its repair", c.peers[i].ID)
	}
	if !strings.Contains(metricsOf(t, c, i), `quorumq_storage_faults_total{kind="data_checksum"}`) {
		t.Fatalf("%s's metrics count no data_checksum fault", c.peers[i].ID)
	}
}

// metricsOf returns broker i's /metrics page.
func metricsOf(t *testing.T, c *cluster, i int) string {
	t.Helper()
	cl := &http.Client{Transport: &http.Transport{TLSClientConfig: c.tls}}
	resp, err := cl.Get("https://" + c.peers[i].HTTPAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func (c *cluster) dataDir(i int) string {
	for j, a := range c.args[i] {
		if a == "--data-dir" {
			return c.args[i][j+1]
		}
	}
	return ""
}

// addBroker starts one more broker process (extra args appended) and returns its index.
func (c *cluster) addBroker(t *testing.T, extra ...string) int {
	i := len(c.peers)
	id := fmt.Sprintf("b%d", i+1)
	p := brokerapi.Peer{ID: id, RaftAddr: proctest.FreeAddr(t), HTTPAddr: proctest.FreeAddr(t)}
	c.peers = append(c.peers, p)
	c.args = append(c.args, append([]string{"broker", "--id", id, "--data-dir", filepath.Join(filepath.Dir(c.dataDir(0)), id),
		"--raft", p.RaftAddr, "--http", p.HTTPAddr}, extra...))
	c.procs = append(c.procs, nil)
	c.start(t, i)
	return i
}

// TestSnapshotOfDamagedBodies (row 5): bits flipped in 10 bodies of one replica, which
// then leads and snapshots (its scrubber off, so only the snapshot reads them); a
// follower is replaced by a new broker, which is built from that replica's snapshot.
// The snapshot never carries the damaged bodies: the new replica holds the right ones.
func TestSnapshotOfDamagedBodies(t *testing.T) {
	const n = 700 // one entry each: the leader's log is truncated, the new member needs a snapshot
	c, cl, _ := setupFaults(t, n, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	v := 0
	c.procs[v].Kill()
	seg := dataSegment(t, c, v)
	for i := range 10 {
		flipBytes(t, seg, int64((50+60*i)*len(checkedBody(0))+500), 1)
	}
	c.args[v] = append(c.args[v], "--scrub-rate", "0")
	c.start(t, v)
	makeLeader(t, c, cl, v)
	waitFor(t, "a snapshot on the leader with its log truncated", func() bool {
		st, err := cl.Status(ctx, c.peers[v].HTTPAddr, faultTopic, 0)
		return err == nil && st.SnapshotIndex > 0 && st.LogFirst > 1
	})
	// Replace a follower by a new broker, until the damaged replica was the leader
	// that sent the snapshot (under load, leadership may move in between).
	members := []int{v, 1, 2}
	for attempt := 0; !strings.Contains(c.procs[v].Output(), "damaged message bodies"); attempt++ {
		if attempt == 3 {
			t.Fatalf("%s never sent a snapshot while leading", c.peers[v].ID)
		}
		makeLeader(t, c, cl, v)
		w := members[1]
		if err := cl.Do(ctx, http.MethodDelete, c.peers[v].HTTPAddr, fmt.Sprintf("/replicas/%s/0/members/%s", faultTopic, c.peers[w].ID), nil, nil); err != nil {
			t.Fatal(err)
		}
		c.procs[w].Kill()
		x := c.addBroker(t)
		members = []int{v, members[2], x}
		var peers []brokerapi.Peer
		for _, i := range members {
			peers = append(peers, c.peers[i])
		}
		if err := cl.Do(ctx, http.MethodPost, c.peers[x].HTTPAddr, "/replicas",
			brokerapi.CreateReplicaRequest{Topic: faultTopic, Partition: new(int), Peers: peers}, nil); err != nil {
			t.Fatal(err)
		}
		if err := cl.Do(ctx, http.MethodPost, c.peers[v].HTTPAddr, fmt.Sprintf("/replicas/%s/0/members", faultTopic), c.peers[x], nil); err != nil {
			t.Fatal(err)
		}
		readAll(t, cl, c.peers[x].HTTPAddr, n)
	}
	checkFaultSeen(t, c, v)
	readAll(t, cl, c.peers[v].HTTPAddr, n)
}

// newestWAL returns the newest WAL segment of broker i and where its records end (the
// last byte that is not zero: a fresh broker's segments are zero after their records).
func newestWAL(t *testing.T, c *cluster, i int) (string, int64) {
	t.Helper()
	names, _ := filepath.Glob(filepath.Join(c.dataDir(i), "wal", "wal-*.seg"))
	if len(names) == 0 {
		t.Fatalf("no WAL segment for %s", c.peers[i].ID)
	}
	path := names[len(names)-1]
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	end := len(b)
	for end > 0 && b[end-1] == 0 {
		end--
	}
	return path, int64(end)
}

// TestWALBitFlip (row 2): 4 bytes flipped in the middle of a follower's newest WAL
// segment. The replica keeps its log up to the damage, reports it (verify too), and
// catches up from the leader: nothing acknowledged is lost, no wrong body is served.
func TestWALBitFlip(t *testing.T) {
	const n = 400
	c, cl, v := setupFaults(t, n, 10)
	c.procs[v].Kill()
	path, end := newestWAL(t, c, v)
	flipBytes(t, path, end/2, 4)
	if out, ok := verifyOffline(t, c.dataDir(v)); ok || !strings.Contains(out, "DAMAGED wal: p/faults/0") {
		t.Fatalf("verify after the flip (ok %v):\n%s", ok, out)
	}
	c.start(t, v)
	produceChecked(t, cl, n, 100, 10)
	waitStored(t, c, cl, n+100, v)
	readAll(t, cl, c.peers[v].HTTPAddr, n+100)
	makeLeader(t, c, cl, v)
	consumeAll(t, cl, n+100)
	stopAndVerify(t, c, v)
}

// TestShortenedWALDoesNotLead (row 1): follower W is paused; 400 messages are
// acknowledged by the leader L and follower V; V is killed and loses the last 64 KiB
// of its newest WAL segment's records (or has a bit flipped 64 KiB before their end);
// V restarts; L is killed; W resumes. V must not win an election with its shortened
// log (W would vote for it): the partition waits for L, and nothing acknowledged is
// lost.
func TestShortenedWALDoesNotLead(t *testing.T) {
	for _, damage := range []string{"cut", "flip"} {
		t.Run(damage, func(t *testing.T) {
			const n = 400
			c, cl, _ := setupFaults(t, 100, 10)
			l := c.index(waitLeader(t, cl, faultTopic, 0))
			v, w := (l+1)%3, (l+2)%3
			if err := c.procs[w].Signal(syscall.SIGSTOP); err != nil {
				t.Fatal(err)
			}
			produceChecked(t, cl, 100, n, 10)
			time.Sleep(time.Second) // the WAL's watermark of synced entries lags by up to 200 ms
			c.procs[v].Kill()
			path, end := newestWAL(t, c, v)
			if end < 64<<10 {
				t.Fatalf("only %d bytes of records in %s", end, path)
			}
			if damage == "cut" {
				if err := os.Truncate(path, end-64<<10); err != nil {
					t.Fatal(err)
				}
			} else {
				flipBytes(t, path, end-64<<10, 1)
			}
			if out, ok := verifyOffline(t, c.dataDir(v)); ok || !strings.Contains(out, "DAMAGED wal: p/faults/0") {
				t.Fatalf("verify after the damage (ok %v):\n%s", ok, out)
			}
			c.start(t, v)
			c.procs[l].Kill()
			if err := c.procs[w].Signal(syscall.SIGCONT); err != nil {
				t.Fatal(err)
			}
			// Give V and W time to elect one of them, which must not happen.
			deadline := time.Now().Add(8 * time.Second)
			for time.Now().Before(deadline) {
				for _, i := range []int{v, w} {
					if st, err := cl.Status(context.Background(), c.peers[i].HTTPAddr, faultTopic, 0); err == nil && st.IsLeader {
						t.Fatalf("%s was elected without the old leader (%s has a shortened log)", c.peers[i].ID, c.peers[v].ID)
					}
				}
				time.Sleep(100 * time.Millisecond)
			}
			c.start(t, l)
			waitLeader(t, cl, faultTopic, 0)
			produceChecked(t, cl, 100+n, 400, 10)
			total := 100 + n + 400
			waitStored(t, c, cl, total, 0, 1, 2)
			for i := range c.peers {
				readAll(t, cl, c.peers[i].HTTPAddr, total)
			}
			consumeAll(t, cl, total)
		})
	}
}
