// Package consul implements discovery.Backend with a Consul agent and starts and stops
// agents (dev mode) for `quorumq dev` and tests. It is the only package importing
// github.com/hashicorp/consul/api.
package consul

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/quorumq/quorumq/discovery"
)

// DefaultCheckInterval is used when a Registration leaves CheckInterval zero. It is
// also Consul's floor: the agent polls no faster than once a second, so a failing
// endpoint shows up as critical about a second later (measured 0.5–1.0 s here).
const DefaultCheckInterval = time.Second

// ErrUnreachable wraps every failure to reach the agent's HTTP API.
var ErrUnreachable = errors.New("consul agent unreachable")

// Backend talks to one Consul agent. Instances it registers get the Consul service ID
// "<service>-<id>", so equal IDs in different services (m1 vs. b1 is up to the callers)
// cannot collide on a shared agent; Instance.ID is mapped back on the way out.
type Backend struct {
	addr      string
	client    *api.Client
	anonymous bool // no token: what an agent with default deny shows nothing
	log       *slog.Logger
	// waitTime bounds one blocking query; a watch re-issues it after each return.
	waitTime time.Duration
	tagMu    sync.Mutex // SetTag is read-modify-write on the agent

	// kept is what this backend registered (by Consul ID, tags as last set), so that an
	// agent that restarts without its state gets the instance back; keepEvery is how
	// often each registration is checked.
	keepMu    sync.Mutex
	kept      map[string]*api.AgentServiceRegistration
	keepEvery time.Duration
	// regMu orders a keeper's look-and-re-register with Deregister: a keeper that read
	// its registration just before a Deregister found the instance gone and registered
	// it again, for good.
	regMu sync.Mutex
}

var _ discovery.Backend = (*Backend)(nil)

// New returns a Backend for the agent whose HTTP API listens on addr (host:port, an
// http:// prefix is accepted), calling it with the ACL token ("" is the anonymous
// token, which an agent with default deny refuses everything). It does not contact
// the agent: an agent that is down now shows up as ErrUnreachable errors from the
// calls, and watches wait for it.
func New(addr, token string, logger *slog.Logger) (*Backend, error) {
	addr = strings.TrimSuffix(strings.TrimPrefix(addr, "http://"), "/")
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return nil, fmt.Errorf("consul: agent address %q must be host:port: %w", addr, err)
	}
	if logger == nil {
		logger = slog.Default()
	}
	cfg := api.DefaultConfig()
	cfg.Address = addr
	cfg.Scheme = "http"
	if token != "" {
		cfg.Token = token // else CONSUL_HTTP_TOKEN(_FILE), as the consul CLI does
	}
	client, err := api.NewClient(cfg)
	if err != nil {
		return nil, fmt.Errorf("consul: client for %s: %w", addr, err)
	}
	return &Backend{
		addr:      addr,
		client:    client,
		anonymous: cfg.Token == "" && cfg.TokenFile == "",
		log:       logger.With("consul", addr),
		waitTime:  time.Minute,
		kept:      map[string]*api.AgentServiceRegistration{},
		keepEvery: 5 * time.Second,
	}, nil
}

// Addr is the agent's HTTP address this backend talks to.
func (b *Backend) Addr() string { return b.addr }

// Register adds (or replaces) the instance on the agent with an HTTP check on
// r.HealthURL; the check starts critical until its first successful poll. Until ctx is
// done or the instance is deregistered, the backend registers it again whenever the
// agent no longer has it (an agent restarted without its state).
func (b *Backend) Register(ctx context.Context, r discovery.Registration) error {
	if r.Service == "" || r.ID == "" {
		return fmt.Errorf("consul: register: service and id are required (got %q/%q)", r.Service, r.ID)
	}
	reg, err := registration(r.Instance)
	if err != nil {
		return err
	}
	if r.HealthURL != "" {
		reg.Check = httpCheck(reg.ID, r)
	}
	if err := b.put(ctx, "register "+reg.ID, reg, true); err != nil {
		return err
	}
	b.keepMu.Lock()
	_, keeping := b.kept[reg.ID]
	b.kept[reg.ID] = reg
	b.keepMu.Unlock()
	if !keeping {
		go b.keep(ctx, reg.ID)
	}
	return nil
}

// keep re-registers sid whenever the agent has lost it, until ctx is done or sid is
// deregistered through this backend.
func (b *Backend) keep(ctx context.Context, sid string) {
	t := time.NewTicker(b.keepEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			b.keepMu.Lock()
			delete(b.kept, sid)
			b.keepMu.Unlock()
			return
		case <-t.C:
		}
		if kept, err := b.keepOnce(ctx, sid); !kept {
			return
		} else if err != nil {
			b.log.Warn("consul: re-registering failed", "service", sid, "err", err)
		}
	}
}

// keepCallTimeout bounds a keeper's look at the agent and its re-registration.
const keepCallTimeout = 5 * time.Second

// keepOnce registers sid again if the agent has lost it; kept is false once sid is no
// longer registered through this backend.
func (b *Backend) keepOnce(ctx context.Context, sid string) (kept bool, err error) {
	// Bounded: a Deregister waits for it (an agent that is stopped answers nothing).
	ctx, cancel := context.WithTimeout(ctx, keepCallTimeout)
	defer cancel()
	b.regMu.Lock()
	defer b.regMu.Unlock()
	b.keepMu.Lock()
	reg := b.kept[sid]
	b.keepMu.Unlock()
	if reg == nil {
		return false, nil
	}
	_, _, err = b.client.Agent().Service(sid, (&api.QueryOptions{}).WithContext(ctx))
	if !notFound(err) {
		return true, nil // present, or the agent is down: try again next tick
	}
	if err := b.put(ctx, "re-register "+sid, reg, true); err != nil {
		return true, err
	}
	b.log.Info("consul: the agent had lost the instance; registered it again", "service", sid)
	return true, nil
}

func registration(in discovery.Instance) (*api.AgentServiceRegistration, error) {
	reg := &api.AgentServiceRegistration{
		ID:   serviceID(in.Service, in.ID),
		Name: in.Service,
		Tags: slices.Clone(in.Tags),
		Meta: in.Meta,
	}
	if in.Addr != "" {
		host, port, err := net.SplitHostPort(in.Addr)
		if err != nil {
			return nil, fmt.Errorf("consul: instance %s/%s: address %q must be host:port: %w", in.Service, in.ID, in.Addr, err)
		}
		reg.Address = host
		if reg.Port, err = strconv.Atoi(port); err != nil {
			return nil, fmt.Errorf("consul: instance %s/%s: bad port in %q", in.Service, in.ID, in.Addr)
		}
	}
	return reg, nil
}

func httpCheck(consulID string, r discovery.Registration) *api.AgentServiceCheck {
	interval := r.CheckInterval
	if interval <= 0 {
		interval = DefaultCheckInterval
	}
	// The agent polls sequentially, so a timeout longer than the interval only delays
	// the next poll; at least a second keeps a busy -race CI box from flapping.
	timeout := r.CheckTimeout
	if timeout <= 0 {
		timeout = max(interval, time.Second)
	}
	c := &api.AgentServiceCheck{
		CheckID:  "service:" + consulID,
		Name:     "HTTP " + r.HealthURL,
		HTTP:     r.HealthURL,
		Method:   http.MethodGet,
		Interval: interval.String(),
		Timeout:  timeout.String(),
		// A secured process serves /healthz over TLS with a certificate of the cluster
		// CA, which the agent does not hold; the check only reads health.
		TLSSkipVerify:          strings.HasPrefix(r.HealthURL, "https://"),
		FailuresBeforeCritical: r.FailuresBeforeCritical,
	}
	if r.DeregisterAfter > 0 {
		// Consul enforces a one-minute minimum and reaps every 30 s.
		c.DeregisterCriticalServiceAfter = r.DeregisterAfter.String()
	}
	return c
}

func (b *Backend) put(ctx context.Context, what string, reg *api.AgentServiceRegistration, replaceChecks bool) error {
	opts := api.ServiceRegisterOpts{ReplaceExistingChecks: replaceChecks}.WithContext(ctx)
	if err := b.client.Agent().ServiceRegisterOpts(reg, opts); err != nil {
		return b.wrap(what, err)
	}
	return nil
}

// Deregister removes the instance and its checks from the agent.
func (b *Backend) Deregister(ctx context.Context, service, id string) error {
	sid := serviceID(service, id)
	b.regMu.Lock()
	defer b.regMu.Unlock()
	b.keepMu.Lock()
	delete(b.kept, sid)
	b.keepMu.Unlock()
	q := (&api.QueryOptions{}).WithContext(ctx)
	if err := b.client.Agent().ServiceDeregisterOpts(sid, q); err != nil {
		return b.wrap("deregister "+sid, err)
	}
	return nil
}

// SetTag re-registers the instance with tag added or removed. The registration omits
// the check and does not replace existing ones, so the agent keeps the check and its
// current status (the instance does not flap to critical while it becomes leader).
func (b *Backend) SetTag(ctx context.Context, service, id, tag string, on bool) error {
	b.tagMu.Lock()
	defer b.tagMu.Unlock()
	sid := serviceID(service, id)
	svc, _, err := b.client.Agent().Service(sid, (&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return b.wrap("read "+sid, err)
	}
	if slices.Contains(svc.Tags, tag) == on {
		return nil
	}
	tags := slices.DeleteFunc(slices.Clone(svc.Tags), func(t string) bool { return t == tag })
	if on {
		tags = append(tags, tag)
	}
	reg := &api.AgentServiceRegistration{
		ID:      svc.ID,
		Name:    svc.Service,
		Tags:    tags,
		Meta:    svc.Meta,
		Address: svc.Address,
		Port:    svc.Port,
	}
	if err := b.put(ctx, "set tag on "+sid, reg, false); err != nil {
		return err
	}
	b.keepMu.Lock()
	if k := b.kept[sid]; k != nil {
		k2 := *k
		k2.Tags = tags
		b.kept[sid] = &k2
	}
	b.keepMu.Unlock()
	return nil
}

// Healthy lists the instances of service whose checks (and node checks) all pass.
func (b *Backend) Healthy(ctx context.Context, service string) ([]discovery.Instance, error) {
	entries, meta, err := b.client.Health().Service(service, "", true, (&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return nil, b.wrap("health of "+service, err)
	}
	// An agent that denies by default shows the anonymous token an empty catalog
	// rather than refusing it: say so instead of "none found".
	if len(entries) == 0 && b.anonymous && meta.DefaultACLPolicy == "deny" {
		return nil, fmt.Errorf("consul agent at %s: health of %s: the agent's ACLs hide everything from a request without a token: give one with --consul-token-file or QUORUMQ_CONSUL_TOKEN (quorumq dev: consul_token in cluster.json)", b.addr, service)
	}
	out := make([]discovery.Instance, 0, len(entries))
	for _, e := range entries {
		out = append(out, instance(e))
	}
	discovery.SortInstances(out)
	return out, nil
}

func serviceID(service, id string) string { return service + "-" + id }

func instance(e *api.ServiceEntry) discovery.Instance {
	s := e.Service
	host := s.Address
	if host == "" && e.Node != nil {
		host = e.Node.Address
	}
	addr := host
	if s.Port != 0 {
		addr = net.JoinHostPort(host, strconv.Itoa(s.Port))
	}
	return discovery.Instance{
		Service: s.Service,
		ID:      strings.TrimPrefix(s.ID, s.Service+"-"),
		Addr:    addr,
		Tags:    slices.Clone(s.Tags),
		Meta:    s.Meta,
	}
}

// health folds the service's and its node's checks into one state; maintenance and
// unknown states count as critical because such an instance must not get traffic.
func health(checks api.HealthChecks) discovery.Health {
	switch checks.AggregatedStatus() {
	case api.HealthPassing:
		return discovery.Passing
	case api.HealthWarning:
		return discovery.Warning
	default:
		return discovery.Critical
	}
}

// wrap names the agent and maps transport failures to ErrUnreachable and 404s to
// discovery.ErrNotFound, so callers can test for both with errors.Is.
func (b *Backend) wrap(what string, err error) error {
	var se api.StatusError
	var ue *url.Error
	switch {
	case errors.As(err, &se) && se.Code == http.StatusNotFound:
		return fmt.Errorf("consul agent at %s: %s: %w (%s)", b.addr, what, discovery.ErrNotFound, se.Body)
	case errors.As(err, &se) && se.Code == http.StatusForbidden:
		return fmt.Errorf("consul agent at %s: %s: %w (give this service's token with --consul-token-file or QUORUMQ_CONSUL_TOKEN)",
			b.addr, what, err)
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("consul agent at %s: %s: %w", b.addr, what, err)
	case errors.As(err, &ue):
		return fmt.Errorf("consul: %s: %w at %s (is the agent running?): %v", what, ErrUnreachable, b.addr, ue.Err)
	default:
		return fmt.Errorf("consul agent at %s: %s: %w", b.addr, what, err)
	}
}

// notFound reports whether err is the agent's 404 answer (what wrap maps to
// discovery.ErrNotFound), without building the wrapped error.
func notFound(err error) bool {
	var se api.StatusError
	return errors.As(err, &se) && se.Code == http.StatusNotFound
}
