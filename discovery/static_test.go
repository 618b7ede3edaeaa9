package discovery

import (
	"context"
	"testing"
	"time"
)

func TestStaticHealthyAndWatch(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := NewStatic(
		Instance{Service: ServiceBroker, ID: "b1", Addr: "127.0.0.1:1"},
		Instance{Service: ServiceBroker, ID: "b2", Addr: "127.0.0.1:2"},
	)
	ch, err := s.Watch(ctx, ServiceBroker)
	if err != nil {
		t.Fatal(err)
	}
	if got := <-ch; len(got) != 2 {
		t.Fatalf("first watch list: got %d members, want 2", len(got))
	}
	if err := s.SetHealth(ServiceBroker, "b2", Critical); err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-ch:
		if got[1].Health != Critical {
			t.Fatalf("b2 health = %s, want critical", got[1].Health)
		}
	case <-time.After(time.Second):
		t.Fatal("watch did not report the health change")
	}
	healthy, _ := s.Healthy(ctx, ServiceBroker)
	if len(healthy) != 1 || healthy[0].ID != "b1" {
		t.Fatalf("healthy = %+v, want only b1", healthy)
	}
	if err := s.SetTag(ctx, ServiceBroker, "b1", TagLeader, true); err != nil {
		t.Fatal(err)
	}
	healthy, _ = s.Healthy(ctx, ServiceBroker)
	if !healthy[0].HasTag(TagLeader) {
		t.Fatal("leader tag not set")
	}
	if err := s.Deregister(ctx, ServiceBroker, "nope"); err != ErrNotFound {
		t.Fatalf("deregister unknown: %v, want ErrNotFound", err)
	}
}
