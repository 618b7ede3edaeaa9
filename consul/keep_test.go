package consul_test

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/quorumq/quorumq/consul"
	"github.com/quorumq/quorumq/discovery"
	"github.com/quorumq/quorumq/internal/devtools/consultest"
)

// TestKeepsRegistration: an agent that loses an instance (as one restarted without its
// state does) gets it back from the backend, with the tag set since.
func TestKeepsRegistration(t *testing.T) {
	agent := consultest.Start(t)
	b := newBackend(t, agent.HTTPAddr(), agent.ManagementToken())
	consul.SetKeepEvery(b, 200*time.Millisecond)
	const svc = discovery.ServiceBroker
	h := newHealthServer(t, http.StatusOK)
	ctx := testCtx(t)
	if err := b.Register(ctx, reg(svc, "i1", h, time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := b.SetTag(ctx, svc, "i1", discovery.TagLeader, true); err != nil {
		t.Fatal(err)
	}
	// Behind the backend's back, as the agent forgetting it would.
	req, _ := http.NewRequest(http.MethodPut, fmt.Sprintf("http://%s/v1/agent/service/deregister/%s-i1", agent.HTTPAddr(), svc), nil)
	req.Header.Set("X-Consul-Token", agent.ManagementToken())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	eventually(t, 15*time.Second, func() error {
		in, err := b.Healthy(ctx, svc)
		if err != nil {
			return err
		}
		if len(in) != 1 || !in[0].HasTag(discovery.TagLeader) {
			return fmt.Errorf("healthy = %+v, want i1 back with the leader tag", in)
		}
		return nil
	})

	// Deregistered through the backend, it stays gone.
	if err := b.Deregister(ctx, svc, "i1"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	if in, err := b.Healthy(ctx, svc); err != nil || len(in) != 0 {
		t.Fatalf("after Deregister: %+v, %v; want none", in, err)
	}
}
