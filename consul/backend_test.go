package consul_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quorumq/quorumq/consul"
	"github.com/quorumq/quorumq/discovery"
	"github.com/quorumq/quorumq/internal/devtools/consultest"
)

// healthServer is an HTTP health endpoint whose status code the test flips.
type healthServer struct {
	*httptest.Server
	code atomic.Int32
}

func newHealthServer(t *testing.T, code int) *healthServer {
	t.Helper()
	h := &healthServer{}
	h.code.Store(int32(code))
	h.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(int(h.code.Load()))
	}))
	t.Cleanup(h.Close)
	return h
}

func (h *healthServer) set(code int) { h.code.Store(int32(code)) }

func newBackend(t *testing.T, addr, token string) *consul.Backend {
	t.Helper()
	b, err := consul.New(addr, token, slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// testCtx bounds one call to the agent.
func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// eventually retries f until it returns nil or the (generous) timeout passes.
func eventually(t *testing.T, timeout time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %v", timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func reg(service, id string, h *healthServer, interval time.Duration) discovery.Registration {
	return discovery.Registration{
		Instance: discovery.Instance{
			Service: service,
			ID:      id,
			Addr:    "127.0.0.1:" + strings.TrimPrefix(id, "i"),
			Tags:    []string{"zone-a"},
			Meta:    map[string]string{discovery.MetaRaftAddr: "127.0.0.1:7" + strings.TrimPrefix(id, "i"), discovery.MetaHTTPAddr: "127.0.0.1:1" + strings.TrimPrefix(id, "i")},
		},
		HealthURL:     h.URL + "/healthz",
		CheckInterval: interval,
	}
}

func healthyIDs(ctx context.Context, b *consul.Backend, service string) (string, error) {
	in, err := b.Healthy(ctx, service)
	if err != nil {
		return "", err
	}
	ids := make([]string, len(in))
	for i, x := range in {
		ids[i] = x.ID
	}
	return strings.Join(ids, ","), nil
}

func waitHealthy(t *testing.T, b *consul.Backend, service, want string) {
	t.Helper()
	eventually(t, 10*time.Second, func() error {
		got, err := healthyIDs(testCtx(t), b, service)
		if err != nil {
			return err
		}
		if got != want {
			return fmt.Errorf("healthy %s = %q, want %q", service, got, want)
		}
		return nil
	})
}

func TestHealthyListsOnlyPassingInstances(t *testing.T) {
	agent := consultest.Start(t)
	b := newBackend(t, agent.HTTPAddr(), agent.ManagementToken())
	const svc = "quorumq-broker"
	for _, c := range []struct {
		id   string
		code int
	}{
		{"i1001", http.StatusOK},
		{"i1002", http.StatusInternalServerError},
		{"i1003", http.StatusOK},
	} {
		if err := b.Register(testCtx(t), reg(svc, c.id, newHealthServer(t, c.code), 200*time.Millisecond)); err != nil {
			t.Fatal(err)
		}
	}
	waitHealthy(t, b, svc, "i1001,i1003")

	in, err := b.Healthy(testCtx(t), svc)
	if err != nil {
		t.Fatal(err)
	}
	got := in[0]
	if got.Service != svc || got.Addr != "127.0.0.1:1001" || !got.HasTag("zone-a") ||
		got.Meta[discovery.MetaRaftAddr] != "127.0.0.1:71001" || got.Meta[discovery.MetaHTTPAddr] != "127.0.0.1:11001" {
		t.Fatalf("instance round trip: got %+v", got)
	}
	if other, err := healthyIDs(testCtx(t), b, "quorumq-manager"); err != nil || other != "" {
		t.Fatalf("unrelated service: %q, %v", other, err)
	}
}

func TestSameIDInTwoServices(t *testing.T) {
	agent := consultest.Start(t)
	b := newBackend(t, agent.HTTPAddr(), agent.ManagementToken())
	h := newHealthServer(t, http.StatusOK)
	for _, svc := range []string{discovery.ServiceBroker, discovery.ServiceManager} {
		if err := b.Register(testCtx(t), reg(svc, "i1", h, 200*time.Millisecond)); err != nil {
			t.Fatal(err)
		}
	}
	waitHealthy(t, b, discovery.ServiceBroker, "i1")
	waitHealthy(t, b, discovery.ServiceManager, "i1")
	if err := b.Deregister(testCtx(t), discovery.ServiceBroker, "i1"); err != nil {
		t.Fatal(err)
	}
	waitHealthy(t, b, discovery.ServiceBroker, "")
	waitHealthy(t, b, discovery.ServiceManager, "i1")
}

func TestSetTagKeepsCheck(t *testing.T) {
	agent := consultest.Start(t)
	b := newBackend(t, agent.HTTPAddr(), agent.ManagementToken())
	const svc = discovery.ServiceManager
	h := newHealthServer(t, http.StatusOK)
	if err := b.Register(testCtx(t), reg(svc, "i1", h, 200*time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	waitHealthy(t, b, svc, "i1")

	for _, step := range []struct {
		name string
		on   bool
	}{
		{"on", true},
		{"on again is a no-op", true},
		{"off", false},
		{"off again is a no-op", false},
		{"on once more", true},
	} {
		t.Run(step.name, func(t *testing.T) {
			if err := b.SetTag(testCtx(t), svc, "i1", discovery.TagLeader, step.on); err != nil {
				t.Fatal(err)
			}
			in, err := b.Healthy(testCtx(t), svc)
			if err != nil {
				t.Fatal(err)
			}
			if len(in) != 1 {
				t.Fatalf("healthy right after SetTag = %+v, want the instance still passing", in)
			}
			if in[0].HasTag(discovery.TagLeader) != step.on || !in[0].HasTag("zone-a") {
				t.Fatalf("tags = %v, want leader=%v and zone-a kept", in[0].Tags, step.on)
			}
		})
	}

	// The check survived the re-registrations: a failing endpoint still takes the
	// instance out.
	h.set(http.StatusServiceUnavailable)
	waitHealthy(t, b, svc, "")

	if err := b.SetTag(testCtx(t), svc, "nope", discovery.TagLeader, true); !errors.Is(err, discovery.ErrNotFound) {
		t.Fatalf("SetTag on unknown instance: %v, want ErrNotFound", err)
	}
}

func TestDeregister(t *testing.T) {
	agent := consultest.Start(t)
	b := newBackend(t, agent.HTTPAddr(), agent.ManagementToken())
	const svc = discovery.ServiceATM
	h := newHealthServer(t, http.StatusOK)
	for _, id := range []string{"i1", "i2"} {
		if err := b.Register(testCtx(t), reg(svc, id, h, 200*time.Millisecond)); err != nil {
			t.Fatal(err)
		}
	}
	waitHealthy(t, b, svc, "i1,i2")
	if err := b.Deregister(testCtx(t), svc, "i1"); err != nil {
		t.Fatal(err)
	}
	waitHealthy(t, b, svc, "i2")
	if err := b.Deregister(testCtx(t), svc, "i1"); !errors.Is(err, discovery.ErrNotFound) {
		t.Fatalf("second Deregister: %v, want ErrNotFound", err)
	}
}

func TestRegisterWithoutHealthURLIsPassing(t *testing.T) {
	agent := consultest.Start(t)
	b := newBackend(t, agent.HTTPAddr(), agent.ManagementToken())
	r := discovery.Registration{Instance: discovery.Instance{Service: discovery.ServiceATM, ID: "cli", Addr: "127.0.0.1:9"}}
	if err := b.Register(testCtx(t), r); err != nil {
		t.Fatal(err)
	}
	waitHealthy(t, b, discovery.ServiceATM, "cli")
}

func TestRegisterRejectsBadInput(t *testing.T) {
	b := newBackend(t, "127.0.0.1:1", "") // never contacted: validation comes first
	for _, c := range []struct {
		name string
		in   discovery.Instance
		want string
	}{
		{"no service", discovery.Instance{ID: "a"}, "service and id are required"},
		{"no id", discovery.Instance{Service: "s"}, "service and id are required"},
		{"addr without port", discovery.Instance{Service: "s", ID: "a", Addr: "localhost"}, "must be host:port"},
		{"bad port", discovery.Instance{Service: "s", ID: "a", Addr: "localhost:http"}, "bad port"},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := b.Register(testCtx(t), discovery.Registration{Instance: c.in})
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want it to mention %q", err, c.want)
			}
		})
	}
	if _, err := consul.New("no-port", "", nil); err == nil {
		t.Fatal("New accepted an address without a port")
	}
}

func TestUnreachableAgentGivesClearErrors(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there any more
	b := newBackend(t, addr, "")
	h := newHealthServer(t, http.StatusOK)
	for _, c := range []struct {
		name string
		call func(context.Context) error
	}{
		{"register", func(ctx context.Context) error { return b.Register(ctx, reg("s", "i1", h, 0)) }},
		{"deregister", func(ctx context.Context) error { return b.Deregister(ctx, "s", "i1") }},
		{"set tag", func(ctx context.Context) error { return b.SetTag(ctx, "s", "i1", discovery.TagLeader, true) }},
		{"healthy", func(ctx context.Context) error { _, err := b.Healthy(ctx, "s"); return err }},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := c.call(testCtx(t))
			if !errors.Is(err, consul.ErrUnreachable) || !strings.Contains(err.Error(), addr) {
				t.Fatalf("err = %v, want ErrUnreachable naming %s", err, addr)
			}
			t.Log(err)
		})
	}

	// A watch does not fail: it waits for the agent, and closes when ctx ends.
	wctx, cancel := context.WithCancel(context.Background())
	ch, err := b.Watch(wctx, "s")
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	cancel()
	select {
	case m, ok := <-ch:
		if ok {
			t.Fatalf("watch on a dead agent sent %v", m)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("watch channel not closed after cancel")
	}
}
