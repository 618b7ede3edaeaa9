package broker_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/quorumq/quorumq/broker/brokerapi"
	"github.com/quorumq/quorumq/internal/transport"
)

// readAtRaw reads message off on broker i and returns the status and, on a failure,
// its body.
func readAtRaw(t *testing.T, c *cluster, i, off int) (int, brokerapi.Failure, [][]byte) {
	t.Helper()
	cl := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: c.tls}}
	resp, err := cl.Get(fmt.Sprintf("https://%s/replicas/%s/0/messages?offset=%d&max=1&encoding=base64", c.peers[i].HTTPAddr, faultTopic, off))
	if err != nil {
		return 0, brokerapi.Failure{}, nil
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var f brokerapi.Failure
	var ok brokerapi.ReadAtRawReply
	if resp.StatusCode == http.StatusOK {
		json.Unmarshal(b, &ok)
	} else {
		json.Unmarshal(b, &f)
	}
	return resp.StatusCode, f, ok.Messages
}

// healthOf returns broker i's /healthz reply.
func healthOf(t *testing.T, c *cluster, i int) brokerapi.HealthReply {
	t.Helper()
	var h brokerapi.HealthReply
	if err := c.client().Do(context.Background(), http.MethodGet, c.peers[i].HTTPAddr, "/healthz", nil, &h); err != nil {
		t.Fatal(err)
	}
	return h
}

// TestDamagedEverywhereStaysUnavailable: the same body is damaged on every replica, so
// no replica can repair it and none is a healthy leader to rebuild from. That message
// is never served: every replica answers 503 (code damaged) saying why it is not
// repaired, and /healthz names the fault; every other message is served intact.
func TestDamagedEverywhereStaysUnavailable(t *testing.T) {
	const n, bad = 200, 100
	c, cl, _ := setupFaults(t, n, 10)
	for i := range c.peers {
		c.procs[i].Kill()
		flipBytes(t, dataSegment(t, c, i), int64(bad*len(checkedBody(0))+100), 4)
	}
	for i := range c.peers {
		c.start(t, i)
	}
	waitLeader(t, cl, faultTopic, 0)
	for i := range c.peers {
		waitFor(t, fmt.Sprintf("%s to say why message %d is not served", c.peers[i].ID, bad), func() bool {
			status, f, msgs := readAtRaw(t, c, i, bad)
			if status == http.StatusOK && len(msgs) > 0 {
				t.Fatalf("%s served message %d, damaged on every replica: %.40q", c.peers[i].ID, bad, msgs[0])
			}
			return status == http.StatusServiceUnavailable && f.Code == brokerapi.CodeDamaged &&
				strings.Contains(f.Message, "not repaired yet") && strings.Contains(f.Message, "healthy leader")
		})
		if h := strings.Join(healthOf(t, c, i).StorageFaults, "\n"); !strings.Contains(h, fmt.Sprintf("messages %d to %d", bad, bad)) || !strings.Contains(h, "not repaired yet") {
			t.Fatalf("%s's /healthz does not explain the fault: %s", c.peers[i].ID, h)
		}
	}
	for i := range c.peers {
		readRange(t, cl, c.peers[i].HTTPAddr, 0, bad, checkedBody)
		readRange(t, cl, c.peers[i].HTTPAddr, bad+1, n, checkedBody)
		if status, _, msgs := readAtRaw(t, c, i, bad); status == http.StatusOK && len(msgs) > 0 {
			t.Fatalf("%s served the damaged message %d", c.peers[i].ID, bad)
		}
	}
}

// TestUnrepairableRangeRebuilt: a replica V, cut off from the others' Raft traffic,
// holds damaged index entries for messages the others have since deleted (retention).
// No peer can give them back, so after a while V rebuilds itself from the healthy
// leader (logged, counted as unrepairable): it stays a member, and once the cut heals it
// is sent a snapshot and serves every message the group kept, intact.
func TestUnrepairableRangeRebuilt(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	c := newCluster(t, 3)
	dir := t.TempDir()
	files := make([]string, 3)
	for i := range c.peers {
		files[i] = filepath.Join(dir, fmt.Sprintf("faults-%d", i))
		c.env = append(c.env, []string{transport.FaultFileEnv + "=" + files[i]})
		c.args[i] = append(c.args[i], "--retention-interval", "300ms")
		c.start(t, i)
	}
	cl := c.client()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	retain := func(i int, bytes int64) {
		t.Helper()
		if err := cl.Do(ctx, http.MethodPost, c.peers[i].HTTPAddr, "/replicas",
			brokerapi.CreateReplicaRequest{Topic: faultTopic, Partition: new(int), Peers: c.peers, RetentionBytes: bytes}, nil); err != nil {
			t.Fatal(err)
		}
	}
	for i := range c.peers {
		retain(i, 1<<30)
	}
	const n = 300
	l := c.index(waitLeader(t, cl, faultTopic, 0))
	v, w := (l+1)%3, (l+2)%3
	produceChecked(t, cl, 0, n, 10)
	waitStored(t, c, cl, n, 0, 1, 2)

	c.procs[v].Kill()
	damageIndexEntries(t, c.dataDir(v), func(int) []int { return []int{0} }) // messages [0, 10)
	// The others keep about the newest 100 messages.
	retain(l, 100*int64(len(checkedBody(0))))
	retain(w, 100*int64(len(checkedBody(0))))
	start := 0
	waitFor(t, "retention on the leader and the other follower", func() bool {
		st, err1 := cl.Status(ctx, c.peers[l].HTTPAddr, faultTopic, 0)
		sw, err2 := cl.Status(ctx, c.peers[w].HTTPAddr, faultTopic, 0)
		start = int(min(st.First, sw.First))
		return err1 == nil && err2 == nil && start >= 100
	})
	cut := map[transport.Link]transport.LinkFault{}
	for _, o := range []int{l, w} {
		cut[transport.Link{From: v, To: o}] = transport.LinkFault{Drop: true}
		cut[transport.Link{From: o, To: v}] = transport.LinkFault{Drop: true}
	}
	var addrs []string
	for _, p := range c.peers {
		addrs = append(addrs, p.RaftAddr)
	}
	for i, fs := range transport.FaultsOf(addrs, cut) {
		if err := transport.WriteFaultFile(files[i], transport.FormatFaults(fs)); err != nil {
			t.Fatal(err)
		}
	}
	c.start(t, v)
	c.procs[v].WaitOutput(t, "rebuilding the replica from a healthy leader", 90*time.Second)
	if !strings.Contains(metricsOf(t, c, v), `quorumq_storage_faults_total{kind="unrepairable"}`) {
		t.Fatalf("%s's metrics count no unrepairable fault", c.peers[v].ID)
	}
	for off := range 10 {
		if status, _, msgs := readAtRaw(t, c, v, off); status == http.StatusOK && len(msgs) > 0 && string(msgs[0]) != checkedBody(off) {
			t.Fatalf("%s served a wrong body at %d", c.peers[v].ID, off)
		}
	}
	for i := range c.peers {
		if err := transport.WriteFaultFile(files[i], ""); err != nil {
			t.Fatal(err)
		}
	}
	produceChecked(t, cl, n, 50, 10)
	waitStored(t, c, cl, n+50, 0, 1, 2)
	st, err := cl.Status(ctx, c.peers[v].HTTPAddr, faultTopic, 0)
	if err != nil || int(st.First) < start {
		t.Fatalf("%s after its rebuild starts at %d, the group at %d (%v)", c.peers[v].ID, st.First, start, err)
	}
	readRange(t, cl, c.peers[v].HTTPAddr, int(st.First), n+50, checkedBody)
}
