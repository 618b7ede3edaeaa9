package discovery

import (
	"context"
	"slices"
	"sync"
)

// Static is an in-memory Backend: a fixed or programmatically edited list of instances.
// It is what unit tests and Consul-less runs use; health is whatever SetHealth says.
type Static struct {
	mu      sync.Mutex
	members map[string]map[string]Member // service → id → member
	subs    map[string][]chan struct{}
}

// NewStatic returns a Static backend holding the given instances, all passing.
func NewStatic(instances ...Instance) *Static {
	s := &Static{members: map[string]map[string]Member{}, subs: map[string][]chan struct{}{}}
	for _, in := range instances {
		s.put(Member{Instance: in, Health: Passing})
	}
	return s
}

func (s *Static) put(m Member) {
	svc := s.members[m.Service]
	if svc == nil {
		svc = map[string]Member{}
		s.members[m.Service] = svc
	}
	m.Tags = slices.Clone(m.Tags)
	svc[m.ID] = m
}

func (s *Static) notify(service string) {
	for _, c := range s.subs[service] {
		select {
		case c <- struct{}{}:
		default:
		}
	}
}

// Register adds or replaces an instance; it starts passing.
func (s *Static) Register(_ context.Context, r Registration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.put(Member{Instance: r.Instance, Health: Passing})
	s.notify(r.Service)
	return nil
}

// Deregister removes an instance.
func (s *Static) Deregister(_ context.Context, service, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.members[service][id]; !ok {
		return ErrNotFound
	}
	delete(s.members[service], id)
	s.notify(service)
	return nil
}

// SetTag adds or removes a tag.
func (s *Static) SetTag(_ context.Context, service, id, tag string, on bool) error {
	return s.update(service, id, func(m *Member) {
		m.Tags = slices.DeleteFunc(m.Tags, func(t string) bool { return t == tag })
		if on {
			m.Tags = append(m.Tags, tag)
		}
	})
}

// SetHealth changes an instance's health, as a failing check would.
func (s *Static) SetHealth(service, id string, h Health) error {
	return s.update(service, id, func(m *Member) { m.Health = h })
}

// update changes a registered instance with change and tells the watchers.
func (s *Static) update(service, id string, change func(*Member)) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, ok := s.members[service][id]
	if !ok {
		return ErrNotFound
	}
	change(&m)
	s.members[service][id] = m
	s.notify(service)
	return nil
}

func (s *Static) list(service string) []Member {
	out := make([]Member, 0, len(s.members[service]))
	for _, m := range s.members[service] {
		m.Tags = slices.Clone(m.Tags)
		out = append(out, m)
	}
	SortMembers(out)
	return out
}

// Healthy lists the passing instances of service.
func (s *Static) Healthy(_ context.Context, service string) ([]Instance, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Instance
	for _, m := range s.list(service) {
		if m.Health == Passing {
			out = append(out, m.Instance)
		}
	}
	return out, nil
}

// Watch sends the member list now and after every change.
func (s *Static) Watch(ctx context.Context, service string) (<-chan []Member, error) {
	kick := make(chan struct{}, 1)
	s.mu.Lock()
	s.subs[service] = append(s.subs[service], kick)
	s.mu.Unlock()
	out := make(chan []Member, 1)
	go func() {
		defer close(out)
		defer func() {
			s.mu.Lock()
			s.subs[service] = slices.DeleteFunc(s.subs[service], func(c chan struct{}) bool { return c == kick })
			s.mu.Unlock()
		}()
		for {
			s.mu.Lock()
			list := s.list(service)
			s.mu.Unlock()
			select {
			case out <- list:
			case <-ctx.Done():
				return
			}
			select {
			case <-kick:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out, nil
}
