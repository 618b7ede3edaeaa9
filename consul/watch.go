package consul

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/quorumq/quorumq/discovery"
	"github.com/quorumq/quorumq/internal/retry"
)

// Backoff bounds for a watch whose agent is failing or gone.
const (
	watchBackoffMin = 50 * time.Millisecond
	watchBackoffMax = 2 * time.Second
)

// Watch follows service with blocking queries and sends the full member list (every
// instance with its aggregated health, sorted by ID) first and after each change, until
// ctx is done. Agent errors are retried with backoff and the query index is reset, so the
// watch survives an agent restart (a fresh dev agent starts its indexes low again).
func (b *Backend) Watch(ctx context.Context, service string) (<-chan []discovery.Member, error) {
	if service == "" {
		return nil, errors.New("consul: watch: service name is required")
	}
	out := make(chan []discovery.Member, 1)
	go b.watch(ctx, service, out)
	return out, nil
}

func (b *Backend) watch(ctx context.Context, service string, out chan<- []discovery.Member) {
	defer close(out)
	var (
		index    uint64
		last     string
		failures int
	)
	backoff := retry.Policy{First: watchBackoffMin, Max: watchBackoffMax}.Start()
	for ctx.Err() == nil {
		q := (&api.QueryOptions{WaitIndex: index, WaitTime: b.waitTime}).WithContext(ctx)
		entries, meta, err := b.client.Health().Service(service, "", false, q)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			// A restarted agent answers with lower indexes; waiting on the old one
			// would block for the whole WaitTime and miss every change meanwhile.
			index = 0
			failures++
			wait, _ := backoff.Next()
			level := b.log.Warn
			if failures > 1 {
				level = b.log.Debug
			}
			level("consul watch failing, retrying", "service", service, "err", b.wrap("watch "+service, err), "retry_in", wait)
			if retry.Sleep(ctx, wait) != nil {
				return
			}
			continue
		}
		if failures > 0 {
			b.log.Info("consul watch recovered", "service", service, "failures", failures)
			failures = 0
			backoff.Reset()
		}
		// Index 0 would make the next query return at once: guard against a tight loop.
		index = max(meta.LastIndex, 1)
		members := make([]discovery.Member, 0, len(entries))
		for _, e := range entries {
			members = append(members, discovery.Member{Instance: instance(e), Health: health(e.Checks)})
		}
		discovery.SortMembers(members)
		// Blocking queries also return on unrelated index bumps and on WaitTime expiry.
		// The fingerprint (fmt prints maps sorted) stays ours even if the receiver
		// edits the slices it got. It is never empty ("[]" at least), so the first
		// answer always differs from the initial last.
		key := fmt.Sprint(members)
		if key == last {
			continue
		}
		select {
		case out <- members:
			last = key
		case <-ctx.Done():
			return
		}
	}
}
