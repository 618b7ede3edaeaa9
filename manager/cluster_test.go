package manager

import (
	"context"
	"database/sql"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect/pgdialect"
	"github.com/uptrace/bun/driver/pgdriver"

	"github.com/quorumq/quorumq/cmd/quorumq/proctest"
	"github.com/quorumq/quorumq/consul"
	"github.com/quorumq/quorumq/discovery"
	"github.com/quorumq/quorumq/internal/devtools/consulagent"
	"github.com/quorumq/quorumq/internal/devtools/consultest"
	"github.com/quorumq/quorumq/internal/devtools/pgserver"
	"github.com/quorumq/quorumq/manager/managerapi"
	"github.com/quorumq/quorumq/manager/meta"
	"github.com/quorumq/quorumq/manager/pgstore"
)

// managerProc is one `quorumq manager` process of a test cluster.
type managerProc struct {
	id, dir, raft, http, dsn string
	proc                     *proctest.Proc
}

type procCluster struct {
	grace    string // --broker-grace; empty: the default
	agent    *consulagent.Agent
	disc     *consul.Backend
	pg       *pgserver.Server
	managers []*managerProc
}

// newProcCluster starts Consul and PostgreSQL for a test cluster; startManagers then
// adds the managers.
func newProcCluster(t *testing.T, grace string) *procCluster {
	agent := consultest.Start(t)
	procClientOnce.Do(func() {
		procClient = proctest.HTTPClient(t)
		procClient.Timeout = 15 * time.Second
	})
	return &procCluster{agent: agent, disc: consultest.Backend(t, agent, consulagent.Reader), grace: grace, pg: pgserver.StartT(t)}
}

// startManagers starts m1, m2 and m3, each with a database of its own.
func (c *procCluster) startManagers(t *testing.T) {
	for _, id := range []string{"m1", "m2", "m3"} {
		m := &managerProc{id: id, dir: t.TempDir(), raft: proctest.FreeAddr(t), http: proctest.FreeAddr(t), dsn: c.pg.DSN("quorumq_" + id)}
		c.managers = append(c.managers, m)
		c.start(t, m)
	}
}

func (c *procCluster) start(t *testing.T, m *managerProc) {
	args := []string{"manager", "--id", m.id, "--data-dir", m.dir, "--raft", m.raft, "--http", m.http,
		"--bootstrap-expect", "3", "--postgres", m.dsn}
	args = append(args, consultest.Flags(t, c.agent, discovery.ServiceManager)...)
	if c.grace != "" {
		args = append(args, "--broker-grace", c.grace)
	}
	m.proc = proctest.Start(t, m.id, args...)
}

// startBroker runs b registering in the cluster's Consul.
func (c *procCluster) startBroker(t *testing.T, b *brokerProc) *proctest.Proc {
	args := []string{"broker", "--id", b.id, "--data-dir", b.dir, "--raft", b.raft, "--http", b.http}
	return proctest.Start(t, b.id, append(args, consultest.Flags(t, c.agent, discovery.ServiceBroker)...)...)
}

// getJSON GETs addr+path into out; status 0 means the manager did not answer.
func getJSON(addr, path string, out any) int {
	return sendJSON("GET", addr, path, "", out)
}

// procClient speaks to the secured processes (TLS, a cluster certificate, the admin
// token); the same for every test of the binary.
var (
	procClientOnce sync.Once
	procClient     *http.Client
)

func sendJSON(method, addr, path, body string, out any) int {
	req, _ := http.NewRequest(method, proctest.URL(addr, path), strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	resp, err := procClient.Do(req)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if out != nil && json.Unmarshal(raw, out) != nil {
		return 0
	}
	return resp.StatusCode
}

// writeManager is who m says writes, "" when m does not answer or knows none.
func writeManager(m *managerProc) string {
	var r managerapi.ManagersReply
	if getJSON(m.http, "/managers", &r) != 200 {
		return ""
	}
	return r.WriteManager
}

// consulLeader is the passing manager carrying the leader tag in Consul ("" if none,
// "!" if several do).
func (c *procCluster) consulLeader(ctx context.Context) string {
	insts, err := c.disc.Healthy(ctx, discovery.ServiceManager)
	if err != nil {
		return ""
	}
	var leaders []string
	for _, in := range insts {
		if in.HasTag(discovery.TagLeader) {
			leaders = append(leaders, in.ID)
		}
	}
	switch len(leaders) {
	case 0:
		return ""
	case 1:
		return leaders[0]
	}
	return "!"
}

// taggedManagers lists every manager instance carrying the leader tag, whatever its
// health.
func (c *procCluster) taggedManagers(t *testing.T) []string {
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	ch, err := c.disc.Watch(ctx, discovery.ServiceManager)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, m := range <-ch {
		if m.HasTag(discovery.TagLeader) {
			ids = append(ids, m.ID)
		}
	}
	return ids
}

func (c *procCluster) byID(id string) *managerProc {
	for _, m := range c.managers {
		if m.id == id {
			return m
		}
	}
	return nil
}

// waitSettled waits until every manager agrees on one write manager, Consul shows it,
// and every manager has applied the same index.
func (c *procCluster) waitSettled(t *testing.T) string {
	t.Helper()
	var leader string
	eventually(t, 60*time.Second, "managers settled", func() bool {
		leader = writeManager(c.managers[0])
		if leader == "" || c.consulLeader(t.Context()) != leader {
			return false
		}
		var idx uint64
		for i, m := range c.managers {
			var h managerapi.HealthReply
			if writeManager(m) != leader || getJSON(m.http, "/healthz", &h) != 200 || (i > 0 && h.AppliedIndex != idx) {
				return false
			}
			idx = h.AppliedIndex
		}
		return true
	})
	return leader
}

// dumps reads every manager's PostgreSQL tables.
func dumps(t *testing.T, c *procCluster) []string {
	t.Helper()
	var out []string
	for _, m := range c.managers {
		db := bun.NewDB(sql.OpenDB(pgdriver.NewConnector(pgdriver.WithDSN(m.dsn))), pgdialect.New())
		d, err := pgstore.Dump(t.Context(), db)
		db.Close()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, d)
	}
	return out
}

func topicsOf(t *testing.T, m *managerProc) map[string]managerapi.TopicInfo {
	t.Helper()
	var list managerapi.TopicsReply
	if code := getJSON(m.http, "/topics", &list); code != 200 {
		t.Fatalf("%s: GET /topics: %d", m.id, code)
	}
	out := map[string]managerapi.TopicInfo{}
	for _, name := range list.Topics {
		var tr managerapi.TopicReply
		if code := getJSON(m.http, "/topics/"+name, &tr); code != 200 {
			t.Fatalf("%s: GET /topics/%s: %d", m.id, name, code)
		}
		out[name] = tr.Topic
	}
	return out
}

// TestManagerProcesses runs three real manager processes with real Consul and
// PostgreSQL: the write manager is SIGKILLed and replaced, the old one returns as a
// read manager with all metadata, every manager's tables hold the same metadata, and a
// restart of all managers keeps it.
func TestManagerProcesses(t *testing.T) {
	c := newProcCluster(t, "2s")
	fb := newFakeBrokers()
	fb.secured = true
	for _, id := range []string{"b1", "b2", "b3"} {
		fb.start(t, consultest.Backend(t, c.agent, discovery.ServiceBroker), id)
	}
	c.startManagers(t)
	leader := c.waitSettled(t)
	eventually(t, 30*time.Second, "brokers known", func() bool {
		var r managerapi.BrokersReply
		return getJSON(c.managers[0].http, "/brokers", &r) == 200 && len(r.Brokers) == 3
	})
	// Writes through every manager, read managers forwarding to the write manager.
	for _, m := range c.managers {
		if code := sendJSON("POST", m.http, "/topics", `{"name":"via-`+m.id+`","partitions":2}`, nil); code != 201 {
			t.Fatalf("create topic via %s: %d", m.id, code)
		}
		if code := sendJSON("POST", m.http, "/producer/register", `{"topic":"via-`+m.id+`"}`, nil); code != 200 {
			t.Fatalf("register producer via %s: %d", m.id, code)
		}
	}

	firstTerm := waitAnnounced(t, fb, leader, 0, "b1", "b2", "b3")

	// SIGKILL the write manager and time the takeover, as the API and Consul show it.
	old := c.byID(leader)
	var survivors []*managerProc
	for _, m := range c.managers {
		if m != old {
			survivors = append(survivors, m)
		}
	}
	killed := time.Now()
	old.proc.Kill()
	var apiAt, consulAt time.Duration
	var next string
	deadline := time.Now().Add(60 * time.Second)
	for (apiAt == 0 || consulAt == 0) && time.Now().Before(deadline) {
		if apiAt == 0 {
			if w := writeManager(survivors[0]); w != "" && w != leader && writeManager(survivors[1]) == w {
				apiAt, next = time.Since(killed), w
			}
		}
		if consulAt == 0 {
			if l := c.consulLeader(t.Context()); l != "" && l != "!" && l != leader {
				consulAt = time.Since(killed)
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	if apiAt == 0 || consulAt == 0 {
		t.Fatalf("no new write manager after killing %s (api %v, consul %v)", leader, apiAt, consulAt)
	}
	t.Logf("write manager %s SIGKILLed: GET /managers names %s after %v; Consul tags it after %v", leader, next, apiAt, consulAt)
	if l := c.consulLeader(t.Context()); l != next {
		t.Fatalf("Consul leader tag on %q, /managers says %q", l, next)
	}
	// The dead write manager's registration stays in Consul (critical) until the agent
	// drops it: it must lose the tag within seconds, not keep it beside the new one.
	eventually(t, 5*time.Second, "only "+next+" tagged leader in Consul", func() bool {
		return slices.Equal(c.taggedManagers(t), []string{next})
	})
	waitAnnounced(t, fb, next, firstTerm, "b1", "b2", "b3")
	t.Logf("every broker names %s as the write manager %v after the SIGKILL", next, time.Since(killed))
	for _, m := range survivors {
		if code := sendJSON("POST", m.http, "/topics", `{"name":"after-`+m.id+`"}`, nil); code != 201 {
			t.Fatalf("create topic via %s after failover: %d", m.id, code)
		}
	}

	// The old write manager returns as a read manager with every topic.
	c.start(t, old)
	settled := c.waitSettled(t)
	if settled == old.id {
		t.Fatalf("the restarted manager %s took leadership back", old.id)
	}
	if code := sendJSON("POST", old.http, "/topics", `{"name":"after-`+old.id+`"}`, nil); code != 201 {
		t.Fatalf("create topic via the restarted %s: %d", old.id, code)
	}
	c.waitSettled(t)
	want := topicsOf(t, survivors[0])
	if len(want) != 6 {
		t.Fatalf("topics %v, want 6", want)
	}
	for _, m := range c.managers {
		if got := topicsOf(t, m); !equalJSON(got, want) {
			t.Fatalf("%s sees topics %v, want %v", m.id, got, want)
		}
	}
	before := dumps(t, c)
	for _, d := range before[1:] {
		if d != before[0] {
			t.Fatalf("PostgreSQL tables differ between managers:\n%s\n%s", before[0], d)
		}
	}

	// A planned stop (SIGTERM) of the write manager hands its role over.
	current := c.byID(settled)
	stopped := time.Now()
	if err := current.proc.Stop(); err != nil {
		t.Errorf("stop %s: %v", current.id, err)
	}
	var handedTo string
	eventually(t, 30*time.Second, "a write manager after a planned stop", func() bool {
		for _, m := range c.managers {
			if m != current {
				if w := writeManager(m); w != "" && w != current.id {
					handedTo = w
					return true
				}
			}
		}
		return false
	})
	t.Logf("write manager %s stopped with SIGTERM: %s writes after %v (includes the process's exit)", current.id, handedTo, time.Since(stopped))

	// Stop every manager and start them again: the same metadata, nothing applied twice.
	for _, m := range c.managers {
		if m == current {
			continue
		}
		if err := m.proc.Stop(); err != nil {
			t.Errorf("stop %s: %v", m.id, err)
		}
	}
	for _, m := range c.managers {
		c.start(t, m)
	}
	c.waitSettled(t)
	for _, m := range c.managers {
		if got := topicsOf(t, m); !equalJSON(got, want) {
			t.Fatalf("after restart %s sees topics %v, want %v", m.id, got, want)
		}
	}
	after := dumps(t, c)
	if !slices.Equal(after, before) {
		t.Fatalf("tables changed across a restart:\n%v\n%v", before, after)
	}
	var pr managerapi.ProducerReply
	if code := sendJSON("POST", c.managers[0].http, "/producer/register", `{"topic":"via-m1"}`, &pr); code != 200 || pr.ProducerID != 4 {
		t.Fatalf("register after restart: %d id %d, want id 4", code, pr.ProducerID)
	}
}

// waitAnnounced waits until every broker ids names manager as the write manager, with a
// term above after, and returns that term.
func waitAnnounced(t *testing.T, fb *fakeBrokers, manager string, after uint64, ids ...string) uint64 {
	t.Helper()
	var term uint64
	eventually(t, 15*time.Second, "every broker names the write manager "+manager, func() bool {
		for _, id := range ids {
			a := fb.writeManager(id)
			if a.ID != manager || a.Term <= after {
				return false
			}
			term = a.Term
		}
		return true
	})
	return term
}

func equalJSON(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}

// brokerProc is one `quorumq broker` process.
type brokerProc struct {
	id, dir, raft, http string
	proc                *proctest.Proc
}

// replicaStatus is the part of a broker's GET /replicas/{topic}/{partition} read here.
type replicaStatus struct {
	Leader struct {
		ID string `json:"id"`
	} `json:"leader"`
	Members []struct {
		ID string `json:"id"`
	} `json:"members"`
}

// TestBrokerKilled runs 3 managers (default 5 s grace) and 4 real brokers: a SIGKILLed
// broker is declared dead after the grace period and every partition it held is re-created elsewhere, back
// to 3 replicas that agree on their members and leader, with no acknowledged message lost.
func TestBrokerKilled(t *testing.T) {
	c := newProcCluster(t, "")
	var brokers []*brokerProc
	for _, id := range []string{"b1", "b2", "b3", "b4"} {
		b := &brokerProc{id: id, dir: t.TempDir(), raft: proctest.FreeAddr(t), http: proctest.FreeAddr(t)}
		b.proc = c.startBroker(t, b)
		brokers = append(brokers, b)
	}
	c.startManagers(t)
	writer := c.waitSettled(t)
	m := c.managers[0]
	eventually(t, 60*time.Second, "4 brokers alive", func() bool {
		var r managerapi.BrokersReply
		return getJSON(m.http, "/brokers", &r) == 200 && len(r.Brokers) == 4
	})
	for _, b := range brokers {
		waitBrokerNames(t, b, writer)
	}
	var tr managerapi.TopicReply
	if code := sendJSON("POST", m.http, "/topics", `{"name":"orders","partitions":4}`, &tr); code != 201 {
		t.Fatalf("create topic: %d %+v", code, tr)
	}
	var pr managerapi.ProducerReply
	if code := sendJSON("POST", m.http, "/producer/register", `{"topic":"orders"}`, &pr); code != 200 {
		t.Fatalf("register producer: %d", code)
	}
	const n = 40
	produced := map[int][]string{} // partition → messages by offset
	for i := range n {
		msg := "msg-" + itoa(uint64(i))
		body := `{"topic":"orders","producer_id":` + itoa(pr.ProducerID) + `,"message":"` + msg + `"}`
		var r struct {
			managerapi.ProduceReply
			managerapi.Failure
		}
		if code := sendJSON("POST", c.managers[i%3].http, "/producer/produce", body, &r); code != 200 {
			t.Fatalf("produce %d: %d %+v", i, code, r.Failure)
		}
		if r.Offset != uint64(len(produced[r.Partition])) {
			t.Fatalf("produce %d: offset %d in partition %d, after %d messages", i, r.Offset, r.Partition, len(produced[r.Partition]))
		}
		produced[r.Partition] = append(produced[r.Partition], msg)
	}
	checkReads(t, c, produced)

	victim := brokers[1]
	killed := time.Now()
	victim.proc.Kill()
	var restored time.Duration
	eventually(t, 60*time.Second, "partitions of the killed broker back to 3 replicas", func() bool {
		var tr managerapi.TopicReply
		if getJSON(m.http, "/topics/orders", &tr) != 200 {
			return false
		}
		for _, p := range tr.Topic.Partitions {
			if len(p.Replicas) != 3 || slices.Contains(p.Replicas, victim.id) {
				return false
			}
			leader := ""
			for _, id := range p.Replicas {
				var st replicaStatus
				b := brokers[slices.IndexFunc(brokers, func(b *brokerProc) bool { return b.id == id })]
				if getJSON(b.http, "/replicas/orders/"+itoa(uint64(p.Partition)), &st) != 200 || len(st.Members) != 3 ||
					st.Leader.ID == "" || (leader != "" && st.Leader.ID != leader) {
					return false
				}
				for _, mem := range st.Members {
					if mem.ID == victim.id {
						return false
					}
				}
				leader = st.Leader.ID
			}
		}
		restored = time.Since(killed)
		return true
	})
	t.Logf("broker %s SIGKILLed: every partition it held back to 3 replicas after %v (default grace 5s)", victim.id, restored)
	checkReads(t, c, produced) // the new replicas too

	var cr managerapi.ConsumerReply
	if code := sendJSON("POST", m.http, "/consumer/register", `{"topic":"orders"}`, &cr); code != 200 {
		t.Fatalf("register consumer: %d", code)
	}
	q := "/consumer/consume?topic=orders&consumer_id=" + itoa(cr.ConsumerID)
	got := map[string]bool{}
	for range n {
		var r managerapi.ConsumeReply
		if code := getJSON(c.managers[1].http, q, &r); code != 200 || r.Message == nil {
			t.Fatalf("consume after %d messages: %d", len(got), code)
		}
		got[*r.Message] = true
	}
	if len(got) != n {
		t.Fatalf("consumed %d distinct messages, want %d", len(got), n)
	}
	var f managerapi.Failure
	if code := getJSON(m.http, q, &f); code != 404 || f.Code != managerapi.CodeNoMessage {
		t.Fatalf("consume past the end: %d %+v", code, f)
	}

	// The killed broker returns: alive again, the replicas moved away while it was dead
	// are deleted from it, and it holds just what the metadata places there (the
	// balance gives it replicas again).
	victim.proc = c.startBroker(t, victim)
	eventually(t, 90*time.Second, "returned broker alive, holding what the metadata places there", func() bool {
		var r managerapi.BrokersReply
		var held struct {
			Replicas []struct {
				Partition int `json:"partition"`
			} `json:"replicas"`
		}
		if getJSON(m.http, "/brokers", &r) != 200 || !slices.ContainsFunc(r.Brokers, func(b managerapi.BrokerInfo) bool {
			return b.ID == victim.id && b.State == string(meta.BrokerAlive)
		}) || getJSON(m.http, "/topics/orders", &tr) != 200 || getJSON(victim.http, "/replicas", &held) != 200 {
			return false
		}
		var want, got []int
		for _, p := range tr.Topic.Partitions {
			if slices.Contains(p.Replicas, victim.id) {
				want = append(want, p.Partition)
			}
		}
		for _, h := range held.Replicas {
			got = append(got, h.Partition)
		}
		slices.Sort(got)
		return slices.Equal(got, want)
	})
	waitBrokerNames(t, victim, writer) // the restarted broker forgot, and was told again

	// Decommission a broker: its replicas move first, then it is released.
	gone := brokers[2].id
	if code := sendJSON("DELETE", c.managers[2].http, "/brokers/"+gone, "", nil); code != 202 {
		t.Fatalf("decommission %s: %d", gone, code)
	}
	eventually(t, 60*time.Second, "decommissioned broker released", func() bool {
		var r managerapi.BrokersReply
		return getJSON(m.http, "/brokers", &r) == 200 && slices.ContainsFunc(r.Brokers, func(b managerapi.BrokerInfo) bool {
			return b.ID == gone && b.State == string(meta.BrokerReleased) && b.Replicas == 0
		})
	})
	if getJSON(m.http, "/topics/orders", &tr) != 200 {
		t.Fatal("describe topic")
	}
	for _, p := range tr.Topic.Partitions {
		if len(p.Replicas) != 3 || slices.Contains(p.Replicas, gone) {
			t.Fatalf("after decommission: partition %+v", p)
		}
	}
	// A partition whose leader was the decommissioned broker has none until the others
	// time out and elect one, and the manager answers 503 (retry) meanwhile: the
	// produce is retried, as clients do, with a seq and a partition that make a retry
	// of a write that did happen a duplicate the partition recognises.
	for i := range 8 {
		body := `{"topic":"orders","producer_id":` + itoa(pr.ProducerID) + `,"partition":` + itoa(uint64(i%4)) +
			`,"seq":` + itoa(uint64(i+1)) + `,"message":"late-` + itoa(uint64(i)) + `"}`
		code := 0
		eventually(t, 30*time.Second, "produce after decommission", func() bool {
			code = sendJSON("POST", m.http, "/producer/produce", body, &f)
			return code != http.StatusServiceUnavailable
		})
		if code != 200 {
			t.Fatalf("produce after decommission: %d %+v", code, f)
		}
	}
	// Size asks any replica; one that joined a moment ago may not answer yet.
	eventually(t, 30*time.Second, "size 8 after decommission", func() bool {
		var sz managerapi.SizeReply
		return getJSON(m.http, "/size?topic=orders&consumer_id="+itoa(cr.ConsumerID), &sz) == 200 && sz.Size == 8
	})
	for i := range 8 {
		var r managerapi.ConsumeReply
		if code := getJSON(c.managers[i%3].http, q, &r); code != 200 || r.Message == nil || !strings.HasPrefix(*r.Message, "late-") {
			t.Fatalf("consume after decommission: %d %+v", code, r)
		}
	}
}

// waitBrokerNames waits until broker b's GET /manager names the write manager.
func waitBrokerNames(t *testing.T, b *brokerProc, manager string) {
	t.Helper()
	eventually(t, 15*time.Second, "broker "+b.id+" names the write manager "+manager, func() bool {
		var a struct{ ID string }
		return getJSON(b.http, "/manager", &a) == 200 && a.ID == manager
	})
}

// checkReads reads every partition by offset through the managers, three times in a
// row from each (so that the round robin asks every replica), and wants what was
// produced. A replica may lag for a moment, never differ: it is asked until it has it.
func checkReads(t *testing.T, c *procCluster, produced map[int][]string) {
	t.Helper()
	for p, want := range produced {
		path := "/topics/orders/partitions/" + itoa(uint64(p)) + "/messages?offset=0&max=1000"
		for _, m := range c.managers {
			for range 3 {
				var r managerapi.MessagesReply
				eventually(t, 30*time.Second, "partition "+itoa(uint64(p))+" read through "+m.id, func() bool {
					code := getJSON(m.http, path, &r)
					if code == 200 && (len(r.Messages) > len(want) || !slices.Equal(r.Messages, want[:len(r.Messages)])) {
						t.Fatalf("partition %d read through %s from %s: %q, want (a prefix of) %q", p, m.id, r.Broker, r.Messages, want)
					}
					return code == 200 && len(r.Messages) == len(want) && r.NextOffset == uint64(len(want))
				})
			}
		}
	}
}
