package clientlib

import (
	"context"
	"sync"
	"time"
)

// refreshTimeout bounds a refresh of a partition count the caller already has.
const refreshTimeout = 2 * time.Second

// topicMeta caches a topic's partition count for producers and consumers, refreshing
// it now and then so that partitions added later are used.
type topicMeta struct {
	admin   *Admin
	topic   string
	refresh time.Duration

	mu      sync.Mutex
	count   int
	fetched time.Time
}

// partitions returns the partition count, asking the managers when the cached one is
// older than the refresh interval; a failed refresh keeps the old count.
func (m *topicMeta) partitions(ctx context.Context) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.count > 0 && time.Since(m.fetched) < m.refresh {
		return m.count, nil
	}
	if m.count > 0 {
		// A refresh must not hold up sends for a whole retry timeout while the
		// managers fail over: the count we have is almost always still right.
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, refreshTimeout)
		defer cancel()
	}
	info, err := m.admin.DescribeTopic(ctx, m.topic)
	switch {
	case err != nil && m.count > 0:
		m.fetched = time.Now()
		return m.count, nil
	case err != nil:
		return 0, err
	}
	m.count, m.fetched = max(len(info.Partitions), 1), time.Now()
	return m.count, nil
}
