// Package discovery is quorumq's own vocabulary for finding and watching services.
// It names no backend: the consul package implements it with Consul, and Static
// implements it with a fixed list for unit tests and for running without Consul.
package discovery

import (
	"cmp"
	"context"
	"errors"
	"slices"
	"sort"
	"time"
)

// Service names registered by quorumq's processes.
const (
	ServiceATM     = "quorumq-atm"
	ServiceBroker  = "quorumq-broker"
	ServiceManager = "quorumq-manager"
)

// Meta keys every quorumq instance may carry.
const (
	MetaRaftAddr = "raft_addr" // host:port of the process's shared Raft listener
	MetaHTTPAddr = "http_addr" // host:port of the process's HTTP API
)

// TagLeader marks the instance that leads the service's Raft group (the write manager).
const TagLeader = "leader"

// ErrNotFound is returned when an instance or service is unknown.
var ErrNotFound = errors.New("discovery: not found")

// Instance is one running process of a service.
type Instance struct {
	Service string
	ID      string
	Addr    string // host:port clients talk to (the HTTP API)
	Tags    []string
	Meta    map[string]string
}

// HasTag reports whether the instance carries tag.
func (i Instance) HasTag(tag string) bool {
	for _, t := range i.Tags {
		if t == tag {
			return true
		}
	}
	return false
}

// Registration describes an instance to register, with its health check.
type Registration struct {
	Instance
	// HealthURL is polled by the backend; empty means a TTL-less, always-passing entry
	// (the Static backend ignores health).
	HealthURL string
	// CheckInterval is how often HealthURL is polled.
	CheckInterval time.Duration
	// CheckTimeout bounds one poll (0: the backend's default, about the interval).
	CheckTimeout time.Duration
	// FailuresBeforeCritical is how many polls in a row must fail before the instance
	// turns critical (0 or 1: the first failure).
	FailuresBeforeCritical int
	// DeregisterAfter removes an instance whose check stays critical this long (0: never).
	DeregisterAfter time.Duration
}

// Registrar registers and deregisters instances, and sets their tags.
type Registrar interface {
	Register(ctx context.Context, r Registration) error
	Deregister(ctx context.Context, service, id string) error
	// SetTag adds (on=true) or removes a tag on a registered instance.
	SetTag(ctx context.Context, service, id, tag string, on bool) error
}

// Resolver lists the healthy instances of a service.
type Resolver interface {
	Healthy(ctx context.Context, service string) ([]Instance, error)
}

// Health is the state of one instance as seen by a watch.
type Health string

const (
	Passing  Health = "passing"
	Warning  Health = "warning"
	Critical Health = "critical"
)

// Member is an instance together with its current health.
type Member struct {
	Instance
	Health Health
}

// Watcher reports every change to a service's instances or their health.
type Watcher interface {
	// Watch sends the full current list once and then again after every change, until
	// ctx is done; then the channel is closed. It keeps going across backend restarts.
	Watch(ctx context.Context, service string) (<-chan []Member, error)
}

// Backend is everything a quorumq process needs from service discovery.
type Backend interface {
	Registrar
	Resolver
	Watcher
}

// SortInstances orders instances by ID so that callers see a stable order.
func SortInstances(in []Instance) {
	sort.Slice(in, func(a, b int) bool { return in[a].ID < in[b].ID })
}

// SortMembers orders members by ID, keeping the order of equal IDs.
func SortMembers(ms []Member) {
	slices.SortStableFunc(ms, func(x, y Member) int { return cmp.Compare(x.ID, y.ID) })
}
