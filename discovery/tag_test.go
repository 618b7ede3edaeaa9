package discovery

import (
	"context"
	"log/slog"
	"slices"
	"testing"
	"time"
)

// tagged lists the instances of service carrying tag, whatever their health.
func tagged(s *Static, service, tag string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var ids []string
	for _, m := range s.list(service) {
		if m.HasTag(tag) {
			ids = append(ids, m.ID)
		}
	}
	return ids
}

func waitTagged(t *testing.T, s *Static, want ...string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := tagged(s, ServiceManager, TagLeader)
		if slices.Equal(got, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("tagged %v, want %v", got, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestHoldTag: the holder takes the tag off a dead former leader and a stale one that
// reappears, carries it while its context lasts and drops it when that ends.
func TestHoldTag(t *testing.T) {
	s := NewStatic(
		Instance{Service: ServiceManager, ID: "m1", Tags: []string{TagLeader, "zone-a"}},
		Instance{Service: ServiceManager, ID: "m2"},
		Instance{Service: ServiceManager, ID: "m3"},
	)
	if err := s.SetHealth(ServiceManager, "m1", Critical); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		HoldTag(ctx, s, ServiceManager, "m2", TagLeader, slog.Default())
	}()
	waitTagged(t, s, "m2")
	if m := s.list(ServiceManager)[0]; !m.HasTag("zone-a") {
		t.Fatalf("m1 lost its other tags: %v", m.Tags)
	}

	// m3 comes back believing it still leads.
	if err := s.SetTag(ctx, ServiceManager, "m3", TagLeader, true); err != nil {
		t.Fatal(err)
	}
	waitTagged(t, s, "m2")

	cancel()
	<-done
	waitTagged(t, s)
}

// TestHoldTagWaitsForRegistration: an instance that registers after the holder started
// gets the tag once it shows up.
func TestHoldTagWaitsForRegistration(t *testing.T) {
	s := NewStatic()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go HoldTag(ctx, s, ServiceManager, "m1", TagLeader, slog.Default())
	time.Sleep(20 * time.Millisecond)
	if err := s.Register(ctx, Registration{Instance: Instance{Service: ServiceManager, ID: "m1"}}); err != nil {
		t.Fatal(err)
	}
	waitTagged(t, s, "m1")
}
