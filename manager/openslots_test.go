package manager

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/quorumq/quorumq/manager/meta"
)

// heldOpens is a broker whose replica opens (POST /replicas) wait until released; it
// counts the opens in flight, and the most it saw at once.
type heldOpens struct {
	release chan struct{}
	mu      sync.Mutex
	now     int
	most    int
	total   int
}

func newHeldOpens(t *testing.T) (*heldOpens, meta.Broker, func()) {
	h := &heldOpens{release: make(chan struct{})}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/replicas" {
			http.Error(w, "not a replica open", http.StatusBadRequest)
			return
		}
		h.mu.Lock()
		h.now++
		h.total++
		h.most = max(h.most, h.now)
		h.mu.Unlock()
		<-h.release
		h.mu.Lock()
		h.now--
		h.mu.Unlock()
		w.Write([]byte(`{"status":"success"}`))
	}))
	var once sync.Once
	open := func() { once.Do(func() { close(h.release) }) }
	t.Cleanup(func() { open(); srv.Close() })
	return h, meta.Broker{Addr: strings.TrimPrefix(srv.URL, "http://")}, open
}

func (h *heldOpens) counts() (now, most, total int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.now, h.most, h.total
}

// The managers ask at most openSlots replica opens of one broker at once, whatever the
// number of partitions being created; another broker's opens do not wait for them, and
// an open whose context ends while it waits for a slot gives up without taking one.
func TestReplicaOpensBoundedPerBroker(t *testing.T) {
	bc := newBrokerClient(func(meta.Partition, string) {})
	busy, b1, release1 := newHeldOpens(t)
	other, b2, release2 := newHeldOpens(t)
	b1.ID, b2.ID = "b1", "b2"
	view := map[string]meta.Broker{"b1": b1, "b2": b2}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	const opens = 3 * openSlots
	errs := make(chan error, opens+3)
	createAll := func(b meta.Broker, n int) {
		for i := range n {
			go func() {
				errs <- bc.createReplica(ctx, view, b, meta.Partition{Topic: "t", Index: i, Replicas: []string{"b1", "b2"}}, []string{"b1", "b2"})
			}()
		}
	}
	createAll(b1, opens)
	eventually(t, 30*time.Second, "b1's slots all taken", func() bool { now, _, _ := busy.counts(); return now == openSlots })
	createAll(b2, 3)
	eventually(t, 30*time.Second, "b2's opens arriving while b1's slots are taken", func() bool {
		now, _, _ := other.counts()
		return now == 3
	})
	release2()

	// b1 is full: an open that gives up waiting never reaches it, and takes no slot.
	gaveUp, stop := context.WithCancel(ctx)
	stop()
	err := bc.createReplica(gaveUp, view, b1, meta.Partition{Topic: "t", Index: opens, Replicas: []string{"b1"}}, []string{"b1"})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("open while b1's slots are taken, context ended = %v, want %v", err, context.Canceled)
	}

	release1()
	for range opens + 3 {
		if err := <-errs; err != nil {
			t.Fatalf("open: %v", err)
		}
	}
	if now, most, total := busy.counts(); now != 0 || most != openSlots || total != opens {
		t.Fatalf("b1 saw %d opens, at most %d at once (%d left); want %d, at most %d", total, most, now, opens, openSlots)
	}
	// Every slot was given back: openSlots opens are taken again at once.
	for i := range openSlots {
		if _, err := bc.openSlot(ctx, b1); err != nil {
			t.Fatalf("slot %d of b1 after every open ended: %v", i, err)
		}
	}
}
