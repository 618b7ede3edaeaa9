package clientlib

import (
	"context"
	"sync"
	"time"
)

// refreshTimeout bounds a refresh of metadata the caller already has.
const refreshTimeout = 2 * time.Second

// minRefreshGap rate-limits the refreshes a failing send asks for: while a partition
// fails over, every sender to it wants fresh metadata, and one fetch serves them all.
const minRefreshGap = 250 * time.Millisecond

// topicMeta caches a topic's partitions (count, replicas, leader) for producers and
// consumers, refreshing them now and then so that partitions added later are used.
type topicMeta struct {
	admin   *Admin
	topic   string
	refresh time.Duration

	mu      sync.Mutex
	parts   []PartitionInfo // indexed by partition number
	fetched time.Time
	// leaders are the HTTP addresses of partition leaders as the brokers named them
	// (a 421) or proved them (an acknowledged produce): fresher than the managers'
	// metadata, which learns of a new leader a moment later.
	leaders map[int]string
}

// partitions returns the partition count, asking the managers when the cached one is
// older than the refresh interval; a failed refresh keeps the old count.
func (m *topicMeta) partitions(ctx context.Context) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.loadLocked(ctx, false); err != nil {
		return 0, err
	}
	return max(len(m.parts), 1), nil
}

// partition returns what the metadata says about partition i; ok is false when the
// topic has no such partition (as far as the cache knows). force asks for a refresh
// unless one happened within minRefreshGap.
func (m *topicMeta) partition(ctx context.Context, i int, force bool) (p PartitionInfo, ok bool, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.loadLocked(ctx, force); err != nil {
		return PartitionInfo{}, false, err
	}
	if i < 0 || i >= len(m.parts) {
		return PartitionInfo{}, false, nil
	}
	p = m.parts[i]
	p.Replicas = append([]string(nil), p.Replicas...)
	return p, true, nil
}

func (m *topicMeta) loadLocked(ctx context.Context, force bool) error {
	age := time.Since(m.fetched)
	if m.parts != nil && age < m.refresh && !(force && age >= minRefreshGap) {
		return nil
	}
	if m.parts != nil {
		// A refresh must not hold up sends for a whole retry timeout while the
		// managers fail over: what we have is almost always still right.
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, refreshTimeout)
		defer cancel()
	}
	info, err := m.admin.DescribeTopic(ctx, m.topic)
	switch {
	case err != nil && m.parts != nil:
		m.fetched = time.Now()
		return nil
	case err != nil:
		return err
	}
	parts := make([]PartitionInfo, max(len(info.Partitions), 1))
	for i := range parts {
		parts[i].ID = i
	}
	for _, p := range info.Partitions {
		if p.ID >= 0 && p.ID < len(parts) {
			parts[p.ID] = p
		}
	}
	m.parts, m.fetched = parts, time.Now()
	return nil
}

// leader is the leader address a broker last named for partition i, "" if none.
func (m *topicMeta) leader(i int) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.leaders[i]
}

// setLeader records (addr != "") or forgets (addr == "") partition i's leader address.
func (m *topicMeta) setLeader(i int, addr string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if addr == "" {
		delete(m.leaders, i)
		return
	}
	if m.leaders == nil {
		m.leaders = map[int]string{}
	}
	m.leaders[i] = addr
}
