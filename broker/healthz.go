package broker

import (
	"context"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/quorumq/quorumq/broker/brokerapi"
)

const (
	// Consul polls /healthz every second (registration): a check that times out
	// checkFailures times in a row turns the broker critical.
	checkTimeout  = 5 * time.Second
	checkFailures = 3
	// notesEvery is how often the storage-fault and halted notes that /healthz shows
	// are gathered: they walk every replica, which /healthz itself must not do (with
	// 1,000+ partitions on a loaded machine it answered later than Consul waits).
	notesEvery = time.Second
)

// healthNotes are what /healthz reports besides counts, as last gathered.
type healthNotes struct {
	faults, halted []string
}

// noteHealth gathers the notes every notesEvery until ctx ends.
func (b *Broker) noteHealth(ctx context.Context) {
	t := time.NewTicker(notesEvery)
	defer t.Stop()
	for {
		b.notes.Store(&healthNotes{faults: b.faultNotes(), halted: b.haltedNotes()})
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// healthz answers from counts and the notes last gathered: no walk over the
// replicas, no lock but the broker's map's, held for two reads.
func (b *Broker) healthz(c *fiber.Ctx) error {
	b.mu.RLock()
	n, pending := len(b.replicas), b.pending
	b.mu.RUnlock()
	var notes healthNotes
	if p := b.notes.Load(); p != nil {
		notes = *p
	}
	return success(c, brokerapi.HealthReply{ID: b.cfg.ID, RaftAddr: b.RaftAddr(), HTTPAddr: b.HTTPAddr(), Replicas: n, Reopening: pending,
		StorageFaults: notes.faults, Halted: notes.halted})
}
