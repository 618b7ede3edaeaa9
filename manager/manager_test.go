package manager

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/quorumq/quorumq/discovery"
	"github.com/quorumq/quorumq/internal/devtools/pgserver"
	"github.com/quorumq/quorumq/manager/managerapi"
	"github.com/quorumq/quorumq/manager/meta"
)

// startManager runs a single-member manager group in-process over d.
func startManager(t *testing.T, d *discovery.Static, dsn string) *Manager {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	m, err := New(ctx, Config{ID: "m1", DataDir: t.TempDir(), RaftAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0",
		BootstrapExpect: 1, PostgresDSN: dsn, Discovery: d, BrokerGrace: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	eventually(t, 20*time.Second, "manager leads", func() bool {
		var h managerapi.HealthReply
		return call(t, m, "GET", "/healthz", "", &h) == 200 && h.Leader
	})
	return m
}

// call sends a request and decodes the reply into out; it returns the status code.
func call(t *testing.T, m *Manager, method, path, body string, out any) int {
	t.Helper()
	req, _ := http.NewRequest(method, "http://"+m.HTTPAddr()+path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			t.Fatalf("%s %s: reply %q: %v", method, path, raw, err)
		}
	}
	return resp.StatusCode
}

func eventually(t *testing.T, timeout time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting: %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func brokerStates(t *testing.T, m *Manager) map[string]managerapi.BrokerInfo {
	var r managerapi.BrokersReply
	call(t, m, "GET", "/brokers", "", &r)
	out := map[string]managerapi.BrokerInfo{}
	for _, b := range r.Brokers {
		out[b.ID] = b
	}
	return out
}

// startWithBrokers runs a manager (on database db) and fake brokers with the given ids,
// and waits until the manager knows them all.
func startWithBrokers(t *testing.T, db string, ids ...string) (*Manager, *fakeBrokers, *discovery.Static) {
	t.Helper()
	pg := pgserver.StartT(t)
	d := discovery.NewStatic()
	fb := newFakeBrokers()
	for _, id := range ids {
		fb.start(t, d, id)
	}
	m := startManager(t, d, pg.DSN(db))
	eventually(t, 10*time.Second, "brokers alive", func() bool { return len(brokerStates(t, m)) == len(ids) })
	return m, fb, d
}

func TestAPI(t *testing.T) {
	// Set before the manager starts, and put back after it stopped (cleanups run last
	// first): the creates below wait for their replicas as long as a request may last.
	saved := openWait
	openWait = requestTimeout
	t.Cleanup(func() { openWait = saved })
	m, fb, _ := startWithBrokers(t, "api", "b1", "b2", "b3")

	var tr managerapi.TopicReply
	if code := call(t, m, "POST", "/topics", `{"name":"orders","partitions":3}`, &tr); code != 201 {
		t.Fatalf("create topic: %d %+v", code, tr)
	}
	if len(tr.Topic.Partitions) != 3 || len(tr.Topic.Partitions[0].Replicas) != 3 {
		t.Fatalf("topic %+v", tr.Topic)
	}
	// The create answers once its replicas are open (or after openWait): creates are
	// paced by what the brokers open.
	for _, p := range tr.Topic.Partitions {
		for _, b := range p.Replicas {
			if !fb.holds(b, meta.GroupName("orders", p.Partition)) {
				t.Errorf("create answered before %s opened partition %d", b, p.Partition)
			}
		}
	}
	var pr managerapi.ProducerReply
	call(t, m, "POST", "/producer/register", `{"topic":"orders"}`, &pr)
	var cr managerapi.ConsumerReply
	call(t, m, "POST", "/consumer/register", `{"topic":"orders"}`, &cr)
	for i := range 6 {
		body := `{"topic":"orders","producer_id":` + itoa(pr.ProducerID) + `,"message":"m` + itoa(uint64(i)) + `"}`
		if code := call(t, m, "POST", "/producer/produce", body, nil); code != 200 {
			t.Fatalf("produce: %d", code)
		}
	}
	q := "?topic=orders&consumer_id=" + itoa(cr.ConsumerID)
	var sz managerapi.SizeReply
	if call(t, m, "GET", "/size"+q, "", &sz); sz.Size != 6 {
		t.Fatalf("size %d, want 6", sz.Size)
	}
	// Seed-style clients send the parameters of a GET as a JSON body.
	var szBody managerapi.SizeReply
	if code := call(t, m, "GET", "/size", `{"topic":"orders","consumer_id":`+itoa(cr.ConsumerID)+`}`, &szBody); code != 200 || szBody.Size != 6 {
		t.Fatalf("size with a JSON body: %d %d", code, szBody.Size)
	}
	got := map[string]bool{}
	for range 6 {
		var c managerapi.ConsumeReply
		if code := call(t, m, "GET", "/consumer/consume"+q, "", &c); code != 200 || c.Message == nil {
			t.Fatalf("consume: %d %+v", code, c)
		}
		got[*c.Message] = true
	}
	if len(got) != 6 {
		t.Fatalf("consumed %v", got)
	}

	pid, cid := itoa(pr.ProducerID), itoa(cr.ConsumerID)
	if code := call(t, m, "POST", "/topics", `{"name":"other"}`, nil); code != 201 {
		t.Fatalf("create other: %d", code)
	}
	cases := []struct {
		name, method, path, body string
		status                   int
		code                     string
	}{
		{"duplicate topic", "POST", "/topics", `{"name":"orders"}`, 409, managerapi.CodeTopicExists},
		{"empty topic name", "POST", "/topics", `{"name":""}`, 400, managerapi.CodeInvalid},
		{"bad topic name", "POST", "/topics", `{"name":"a/b"}`, 400, managerapi.CodeInvalid},
		{"negative partitions", "POST", "/topics", `{"name":"x","partitions":-1}`, 400, managerapi.CodeInvalid},
		{"malformed topic body", "POST", "/topics", `{"name":`, 400, managerapi.CodeInvalid},
		{"empty topic body", "POST", "/topics", ``, 400, managerapi.CodeInvalid},
		{"wrong type", "POST", "/topics", `{"name":7}`, 400, managerapi.CodeInvalid},
		{"unknown topic", "GET", "/topics/nope", ``, 404, managerapi.CodeUnknownTopic},
		{"grow unknown", "POST", "/topics/nope/partitions", `{"count":1}`, 404, managerapi.CodeUnknownTopic},
		{"grow by zero", "POST", "/topics/orders/partitions", `{"count":0}`, 400, managerapi.CodeInvalid},
		{"grow malformed", "POST", "/topics/orders/partitions", `[`, 400, managerapi.CodeInvalid},
		{"producer unknown topic", "POST", "/producer/register", `{"topic":"nope"}`, 404, managerapi.CodeUnknownTopic},
		{"producer malformed", "POST", "/producer/register", `nope`, 400, managerapi.CodeInvalid},
		{"consumer unknown topic", "POST", "/consumer/register", `{"topic":"nope"}`, 404, managerapi.CodeUnknownTopic},
		{"consumer bad partition", "POST", "/consumer/register", `{"topic":"orders","partition":9}`, 404, managerapi.CodeNotFound},
		{"produce unknown producer", "POST", "/producer/produce", `{"topic":"orders","producer_id":999,"message":"x"}`, 404, managerapi.CodeUnknownProducer},
		{"produce unknown topic", "POST", "/producer/produce", `{"topic":"nope","producer_id":` + pid + `,"message":"x"}`, 404, managerapi.CodeUnknownTopic},
		{"produce no message", "POST", "/producer/produce", `{"topic":"orders","producer_id":` + pid + `}`, 400, managerapi.CodeInvalid},
		{"produce bad partition", "POST", "/producer/produce", `{"topic":"orders","producer_id":` + pid + `,"message":"x","partition":7}`, 404, managerapi.CodeNotFound},
		{"produce string id", "POST", "/producer/produce", `{"topic":"orders","producer_id":"x","message":"x"}`, 400, managerapi.CodeInvalid},
		{"consume unknown consumer", "GET", "/consumer/consume?topic=orders&consumer_id=999", ``, 404, managerapi.CodeUnknownConsumer},
		{"consume bad consumer id", "GET", "/consumer/consume?topic=orders&consumer_id=abc", ``, 400, managerapi.CodeInvalid},
		{"consume no topic", "GET", "/consumer/consume?consumer_id=" + cid, ``, 400, managerapi.CodeInvalid},
		{"consume unknown topic", "GET", "/consumer/consume?topic=nope&consumer_id=" + cid, ``, 404, managerapi.CodeUnknownTopic},
		{"consume nothing left", "GET", "/consumer/consume" + q, ``, 404, managerapi.CodeNoMessage},
		{"size unknown consumer", "GET", "/size?topic=orders&consumer_id=999", ``, 404, managerapi.CodeUnknownConsumer},
		{"size no topic", "GET", "/size?consumer_id=" + cid, ``, 400, managerapi.CodeInvalid},
		{"size bad consumer id", "GET", "/size?topic=orders&consumer_id=-1", ``, 400, managerapi.CodeInvalid},
		{"size bad partition", "GET", "/size?topic=orders&consumer_id=" + cid + "&partition=x", ``, 400, managerapi.CodeInvalid},
		{"size missing partition", "GET", "/size?topic=orders&consumer_id=" + cid + "&partition=9", ``, 404, managerapi.CodeNotFound},
		{"consume other topic", "GET", "/consumer/consume?topic=other&consumer_id=" + cid, ``, 400, managerapi.CodeInvalid},
		{"consume bad offset", "GET", "/consumer/consume" + q + "&offset=-3", ``, 400, managerapi.CodeInvalid},
		{"produce other topic", "POST", "/producer/produce", `{"topic":"other","producer_id":` + pid + `,"message":"x"}`, 400, managerapi.CodeInvalid},
		{"grow negative", "POST", "/topics/orders/partitions", `{"count":-2}`, 400, managerapi.CodeInvalid},
		{"grow too much", "POST", "/topics/orders/partitions", `{"count":5000}`, 400, managerapi.CodeInvalid},
		{"wrong method", "PUT", "/topics", `{}`, 404, managerapi.CodeNotFound},
		{"size bad max", "GET", "/consumer/consume" + q + "&max=0", ``, 400, managerapi.CodeInvalid},
		{"consume malformed body", "GET", "/consumer/consume", `{"topic":`, 400, managerapi.CodeInvalid},
		{"consume body unknown consumer", "GET", "/consumer/consume", `{"topic":"orders","consumer_id":77}`, 404, managerapi.CodeUnknownConsumer},
		{"decommission unknown", "DELETE", "/brokers/b9", ``, 404, managerapi.CodeUnknownBroker},
		{"no such endpoint", "GET", "/nope", ``, 404, managerapi.CodeNotFound},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var f managerapi.Failure
			status := call(t, m, c.method, c.path, c.body, &f)
			if status != c.status || f.Status != "failure" || f.Code != c.code || f.Message == "" {
				t.Fatalf("got %d %+v, want %d code %s", status, f, c.status, c.code)
			}
			// A refused write changed nothing, and says so.
			write := c.method == "POST" || c.method == "DELETE" || strings.HasPrefix(c.path, "/consumer/consume")
			if want := map[bool]string{true: managerapi.OutcomeNotApplied}[write]; f.Outcome != want {
				t.Fatalf("outcome %q, want %q", f.Outcome, want)
			}
		})
	}

	resp, err := http.Get("http://" + m.HTTPAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`quorumq_manager_is_leader{group="managers"} 1`, `quorumq_manager_raft_state{group="managers",state="leader"} 1`, "quorumq_topics 2", `quorumq_brokers{state="alive"} 3`,
		`quorumq_manager_http_requests_total{code="409",method="POST",route="/topics"} 1`} {
		if !strings.Contains(string(body), want) {
			t.Fatalf("metrics lack %q:\n%s", want, body)
		}
	}

	var mr managerapi.ManagersReply
	if call(t, m, "GET", "/managers", "", &mr); mr.WriteManager != "m1" || len(mr.Managers) != 1 || mr.Managers[0].HTTPAddr == "" {
		t.Fatalf("managers %+v", mr)
	}
	var gr managerapi.TopicReply
	if code := call(t, m, "POST", "/topics/orders/partitions", `{"count":2}`, &gr); code != 200 || len(gr.Topic.Partitions) != 5 {
		t.Fatalf("grow: %d %+v", code, gr)
	}
}

func itoa(n uint64) string { return strings.TrimSpace(string(must(json.Marshal(n)))) }

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// A broker critical past the grace period is declared dead and its replicas move to a
// healthy broker; when it returns it is alive again, its stale replicas are dropped and
// it receives its share again.
// A decommissioned broker is emptied and released.
func TestBrokerDeathAndDecommission(t *testing.T) {
	m, fb, d := startWithBrokers(t, "health", "b1", "b2", "b3", "b4")
	if code := call(t, m, "POST", "/topics", `{"name":"t","partitions":4}`, nil); code != 201 {
		t.Fatalf("create: %d", code)
	}
	held := brokerStates(t, m)["b2"].Replicas
	if held == 0 {
		t.Fatal("b2 holds nothing")
	}
	d.SetHealth(discovery.ServiceBroker, "b2", discovery.Critical)
	eventually(t, 15*time.Second, "b2 dead and emptied", func() bool {
		b := brokerStates(t, m)["b2"]
		return b.State == string(meta.BrokerDead) && b.Replicas == 0
	})
	var tr managerapi.TopicReply
	call(t, m, "GET", "/topics/t", "", &tr)
	for _, p := range tr.Topic.Partitions {
		if len(p.Replicas) != 3 {
			t.Fatalf("partition %d has %d replicas", p.Partition, len(p.Replicas))
		}
		for _, b := range p.Replicas {
			if b == "b2" || !fb.holds(b, meta.GroupName("t", p.Partition)) {
				t.Fatalf("partition %+v: replica on %s missing or on the dead broker", p, b)
			}
		}
	}
	d.SetHealth(discovery.ServiceBroker, "b2", discovery.Passing)
	eventually(t, 10*time.Second, "b2 alive", func() bool { return brokerStates(t, m)["b2"].State == string(meta.BrokerAlive) })
	// Its stale replicas are dropped and the balance gives it its share again: 12
	// replicas over 4 brokers, each holding exactly what the metadata places there.
	eventually(t, 20*time.Second, "b2 holds its share, and only what the metadata places", func() bool {
		call(t, m, "GET", "/topics/t", "", &tr)
		placed := map[string]map[string]bool{}
		for _, p := range tr.Topic.Partitions {
			for _, b := range p.Replicas {
				if placed[b] == nil {
					placed[b] = map[string]bool{}
				}
				placed[b][meta.GroupName("t", p.Partition)] = true
			}
		}
		fb.mu.Lock()
		defer fb.mu.Unlock()
		for _, id := range []string{"b1", "b2", "b3", "b4"} {
			if !maps.Equal(fb.replicas[id], placed[id]) || len(placed[id]) != 3 {
				return false
			}
		}
		return true
	})

	if code := call(t, m, "DELETE", "/brokers/b3", "", nil); code != 202 {
		t.Fatalf("decommission: %d", code)
	}
	eventually(t, 15*time.Second, "b3 released", func() bool { return brokerStates(t, m)["b3"].State == string(meta.BrokerReleased) })
	call(t, m, "GET", "/topics/t", "", &tr)
	for _, p := range tr.Topic.Partitions {
		if len(p.Replicas) != 3 || bytes.Contains(must(json.Marshal(p.Replicas)), []byte(`"b3"`)) {
			t.Fatalf("after decommission: %+v", p)
		}
	}

	// A broker that vanishes from discovery altogether counts as critical.
	if err := d.Deregister(t.Context(), discovery.ServiceBroker, "b1"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 15*time.Second, "deregistered b1 dead", func() bool { return brokerStates(t, m)["b1"].State == string(meta.BrokerDead) })
}

// A topic created while only one broker was alive (after waiting brokerWait for more)
// says so, and gets its other replicas once more brokers come up.
func TestTopUpWhenBrokersJoin(t *testing.T) {
	m, fb, d := startWithBrokers(t, "topup", "b1")
	var tr managerapi.TopicReply
	if code := call(t, m, "POST", "/topics", `{"name":"t","partitions":2}`, &tr); code != 201 || len(tr.Topic.Partitions[0].Replicas) != 1 {
		t.Fatalf("create: %d %+v", code, tr)
	}
	if !strings.Contains(tr.Message, "have only 1 for now") {
		t.Errorf("the reply to an under-replicated create says %q", tr.Message)
	}
	fb.start(t, d, "b2")
	fb.start(t, d, "b3")
	eventually(t, 15*time.Second, "partitions topped up to 3 replicas", func() bool {
		call(t, m, "GET", "/topics/t", "", &tr)
		for _, p := range tr.Topic.Partitions {
			if len(p.Replicas) != 3 {
				return false
			}
			for _, b := range p.Replicas {
				if !fb.holds(b, meta.GroupName("t", p.Partition)) {
					return false
				}
			}
		}
		return true
	})
}

// A create with the default replication made while the cluster is still starting
// waits for that many brokers instead of placing every replica on the first one known.
func TestCreateWaitsForBrokers(t *testing.T) {
	m, fb, d := startWithBrokers(t, "waitbrokers", "b1")
	var tr managerapi.TopicReply
	created := make(chan error, 1)
	go func() {
		resp, err := http.Post("http://"+m.HTTPAddr()+"/topics", "application/json", strings.NewReader(`{"name":"t","partitions":2}`))
		if err == nil {
			defer resp.Body.Close()
			if err = json.NewDecoder(resp.Body).Decode(&tr); err == nil && resp.StatusCode != 201 {
				err = fmt.Errorf("status %d", resp.StatusCode)
			}
		}
		created <- err
	}()
	time.Sleep(300 * time.Millisecond)
	fb.start(t, d, "b2")
	fb.start(t, d, "b3")
	if err := <-created; err != nil {
		t.Fatalf("create: %v %+v", err, tr)
	}
	for _, p := range tr.Topic.Partitions {
		if len(p.Replicas) != 3 {
			t.Errorf("partition %d placed on %v, want 3 brokers", p.Partition, p.Replicas)
		}
	}
	if tr.Message != `topic "t" created` {
		t.Errorf("message %q", tr.Message)
	}
}

// A partition the metadata places on brokers that do not hold it yet (its creation or
// move is under way) is a passing state of the cluster: produce, consume and size answer
// 503 "unavailable", which clients retry, never the 404 of a client's mistake; once the
// replicas open, the same requests succeed. The create itself succeeded: it answers
// 201 while the managers keep opening the replicas (issue 15: a create that succeeded
// never answers 503).
func TestMissingReplicaIsUnavailable(t *testing.T) {
	m, fb, _ := startWithBrokers(t, "opening", "b1", "b2", "b3")
	fb.setOpening(meta.GroupName("slow", 0), true)
	var tr managerapi.TopicReply
	if code := call(t, m, "POST", "/topics", `{"name":"slow"}`, &tr); code != 201 {
		t.Fatalf("create with replicas not opening: %d %+v, want 201 (the topic is recorded)", code, tr)
	}
	var pr managerapi.ProducerReply
	var cr managerapi.ConsumerReply
	if call(t, m, "POST", "/producer/register", `{"topic":"slow"}`, &pr) != 200 ||
		call(t, m, "POST", "/consumer/register", `{"topic":"slow"}`, &cr) != 200 {
		t.Fatal("register on a placed topic failed")
	}
	q := "?topic=slow&consumer_id=" + itoa(cr.ConsumerID)
	produce := `{"topic":"slow","producer_id":` + itoa(pr.ProducerID) + `,"message":"x"}`
	requests := []struct{ name, method, path, body string }{
		{"size", "GET", "/size" + q, ""},
		{"consume", "GET", "/consumer/consume" + q, ""},
		{"produce", "POST", "/producer/produce", produce},
	}
	for _, r := range requests {
		var f managerapi.Failure
		if code := call(t, m, r.method, r.path, r.body, &f); code != 503 || f.Code != managerapi.CodeUnavailable {
			t.Errorf("%s before the replicas open: %d %+v, want 503 %s", r.name, code, f, managerapi.CodeUnavailable)
		}
	}
	fb.setOpening(meta.GroupName("slow", 0), false)
	eventually(t, 30*time.Second, "produce once the manager opened the replicas", func() bool {
		return call(t, m, "POST", "/producer/produce", produce, nil) == 200
	})
	var c managerapi.ConsumeReply
	if code := call(t, m, "GET", "/consumer/consume"+q, "", &c); code != 200 || c.Message == nil || *c.Message != "x" {
		t.Fatalf("consume: %d %+v", code, c)
	}
}
