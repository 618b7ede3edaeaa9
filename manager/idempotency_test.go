package manager

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/quorumq/quorumq/discovery"
	"github.com/quorumq/quorumq/internal/devtools/pgserver"
	"github.com/quorumq/quorumq/manager/managerapi"
)

// keyedCall sends a request with an Idempotency-Key and returns the status, the body
// and whether the reply says it is a replay.
func keyedCall(t *testing.T, m *Manager, method, path, key, body string) (int, string, bool) {
	t.Helper()
	req, _ := http.NewRequest(method, "http://"+m.HTTPAddr()+path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(HeaderIdempotencyKey, key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(raw), resp.Header.Get(HeaderReplayed) == "true"
}

// TestIdempotencyKey: a write repeated with its key answers the first outcome (same
// status and body) and applies nothing twice, also after the manager restarts; the key
// with another request is refused.
func TestIdempotencyKey(t *testing.T) {
	pg := pgserver.StartT(t)
	d := discovery.NewStatic()
	fb := newFakeBrokers()
	for _, id := range []string{"b1", "b2", "b3"} {
		fb.start(t, d, id)
	}
	dir := t.TempDir()
	run := func() (*Manager, func()) {
		ctx, cancel := context.WithCancel(context.Background())
		m, err := New(ctx, Config{ID: "m1", DataDir: dir, RaftAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0",
			BootstrapExpect: 1, PostgresDSN: pg.DSN("keys"), Discovery: d})
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- m.Run(ctx) }()
		eventually(t, 20*time.Second, "manager leads", func() bool {
			var h managerapi.HealthReply
			return call(t, m, "GET", "/healthz", "", &h) == 200 && h.Leader
		})
		return m, func() {
			cancel()
			if err := <-done; err != nil {
				t.Error(err)
			}
		}
	}
	m, stop := run()
	eventually(t, 10*time.Second, "brokers alive", func() bool { return len(brokerStates(t, m)) == 3 })

	writes := []struct{ name, method, path, key, body string }{
		{"create topic", "POST", "/topics", "k-topic", `{"name":"t","partitions":2}`},
		{"grow", "POST", "/topics/t/partitions", "k-grow", `{"count":1}`},
		{"register producer", "POST", "/producer/register", "k-producer", `{"topic":"t"}`},
		{"register consumer", "POST", "/consumer/register", "k-consumer", `{"topic":"t"}`},
		{"create an existing topic", "POST", "/topics", "k-refused", `{"name":"t"}`},
	}
	type outcome struct {
		status int
		body   string
	}
	first := map[string]outcome{}
	for _, w := range writes {
		status, body, replayed := keyedCall(t, m, w.method, w.path, w.key, w.body)
		if replayed {
			t.Fatalf("%s: first request answered as a replay", w.name)
		}
		first[w.name] = outcome{status, body}
	}
	check := func(when string) {
		t.Helper()
		for _, w := range writes {
			status, body, replayed := keyedCall(t, m, w.method, w.path, w.key, w.body)
			if got := (outcome{status, body}); got != first[w.name] || !replayed {
				t.Fatalf("%s, %s: %d %s (replayed %v); first was %d %s", when, w.name, status, body, replayed,
					first[w.name].status, first[w.name].body)
			}
		}
		var tr managerapi.TopicReply
		var pr managerapi.ProducerReply
		if call(t, m, "GET", "/topics/t", "", &tr); len(tr.Topic.Partitions) != 3 {
			t.Fatalf("%s: topic has %d partitions, want 3 (grown once)", when, len(tr.Topic.Partitions))
		}
		if call(t, m, "POST", "/producer/register", `{"topic":"t"}`, &pr); pr.ProducerID != 2 {
			t.Fatalf("%s: the next producer is %d, want 2 (registered once before)", when, pr.ProducerID)
		}
	}
	check("repeated")
	if status, body, _ := keyedCall(t, m, "POST", "/producer/register", "k-producer", `{"topic":"other"}`); status != 422 || !strings.Contains(body, managerapi.CodeKeyReused) {
		t.Fatalf("key reused for another request: %d %s", status, body)
	}
	stop()
	m, stop = run()
	defer stop()
	// The check registers one more producer: after the restart the next one is 3.
	var pr managerapi.ProducerReply
	if call(t, m, "POST", "/producer/register", `{"topic":"t"}`, &pr); pr.ProducerID != 3 {
		t.Fatalf("after restart: next producer %d, want 3", pr.ProducerID)
	}
	for _, w := range writes {
		status, body, replayed := keyedCall(t, m, w.method, w.path, w.key, w.body)
		if (outcome{status, body}) != first[w.name] || !replayed {
			t.Fatalf("after restart, %s: %d %s; first was %+v", w.name, status, body, first[w.name])
		}
	}
}
