package clientlib

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quorumq/quorumq/discovery"
	"github.com/quorumq/quorumq/internal/httpjson"
	"github.com/quorumq/quorumq/internal/retry"
	"github.com/quorumq/quorumq/manager/managerapi"
)

// Client talks to the managers. It is safe for concurrent use; Admin, Producer and
// Consumer share one.
type Client struct {
	http           *http.Client
	managers       *managerSet
	log            *slog.Logger
	minBackoff     time.Duration
	maxBackoff     time.Duration
	retryTimeout   time.Duration
	requestTimeout time.Duration
	direct         bool // producers send to partition leaders, not through a manager
	brokers        *brokerDir
	noticeAfter    time.Duration
	notice         func(err error, left time.Duration)
	scheme         string      // "https" with WithTLS
	tls            *tls.Config // WithTLS
	token          string      // WithToken
	optErr         error       // an option that failed (WithCA's file), returned by New
}

// Option configures a Client.
type Option func(*Client)

// WithResolver finds the managers through discovery (service quorumq-manager), e.g. the
// Consul backend of package consul.
func WithResolver(r discovery.Resolver) Option {
	return func(c *Client) { c.managers.resolver = r }
}

// WithManagers uses a fixed list of manager HTTP addresses ("host:port").
func WithManagers(addrs ...string) Option {
	return func(c *Client) {
		var in []discovery.Instance
		for i, a := range addrs {
			in = append(in, discovery.Instance{Service: discovery.ServiceManager, ID: fmt.Sprintf("m%02d", i), Addr: a})
		}
		c.managers.resolver = discovery.NewStatic(in...)
	}
}

// WithHTTPClient replaces the HTTP client (for TLS, proxies, or tests).
func WithHTTPClient(h *http.Client) Option { return func(c *Client) { c.http = h } }

// WithToken sends token as the bearer token of every request: a secured cluster's
// managers and brokers refuse requests without one (quorumq token create; quorumq dev
// writes an admin token into <data-dir>/cluster.json).
func WithToken(token string) Option { return func(c *Client) { c.token = token } }

// WithTLS speaks https to the managers and brokers, trusting the servers cfg trusts: a
// secured cluster's certificates are signed by its CA (RootCAs; quorumq dev's is
// <data-dir>/ca.pem). It applies to the default HTTP client, not to WithHTTPClient's.
func WithTLS(cfg *tls.Config) Option { return func(c *Client) { c.tls, c.scheme = cfg, "https" } }

// WithLogger logs retries at debug level.
func WithLogger(l *slog.Logger) Option { return func(c *Client) { c.log = l } }

// WithBackoff sets the first and the largest wait between attempts.
func WithBackoff(min, max time.Duration) Option {
	return func(c *Client) { c.minBackoff, c.maxBackoff = min, max }
}

// WithRetryTimeout bounds the retries of a call whose context has no deadline
// (default 30s); a context deadline always wins.
func WithRetryTimeout(d time.Duration) Option { return func(c *Client) { c.retryTimeout = d } }

// WithRequestTimeout bounds one attempt (default 10s), so a manager that hangs costs
// one attempt and not the whole deadline.
func WithRequestTimeout(d time.Duration) Option { return func(c *Client) { c.requestTimeout = d } }

// WithDirectProduce chooses how producers send (default true): straight to each
// partition's leader broker, at the addresses the managers' metadata gives, or (false)
// through a manager, which costs a hop but needs only the managers to be reachable.
// Either way a batch is stored once. A client that reaches no broker sends through
// the managers by itself for a while; false saves it the failed tries.
func WithDirectProduce(on bool) Option { return func(c *Client) { c.direct = on } }

// WithRetryNotice calls fn once for each call that is still failing after the given
// time, with its latest error and how much longer it will keep trying: a command-line
// tool can then tell a person what it is waiting for instead of staying silent until
// its deadline.
func WithRetryNotice(after time.Duration, fn func(err error, left time.Duration)) Option {
	return func(c *Client) { c.noticeAfter, c.notice = after, fn }
}

// New returns a Client. One of WithResolver or WithManagers is required.
func New(opts ...Option) (*Client, error) {
	c := &Client{
		http: &http.Client{Transport: &http.Transport{
			Proxy: http.ProxyFromEnvironment,
			// A broker or manager that is gone must cost a try, not a request timeout.
			DialContext:         (&net.Dialer{Timeout: 3 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConnsPerHost: 64,
			IdleConnTimeout:     90 * time.Second,
		}},
		managers:       &managerSet{ttl: 5 * time.Second, penalty: 3 * time.Second, bad: map[string]time.Time{}},
		log:            slog.New(slog.DiscardHandler),
		minBackoff:     25 * time.Millisecond,
		maxBackoff:     time.Second,
		retryTimeout:   30 * time.Second,
		requestTimeout: 10 * time.Second,
		direct:         true,
		brokers:        &brokerDir{},
		scheme:         "http",
	}
	for _, o := range opts {
		o(c)
	}
	if c.optErr != nil {
		return nil, c.optErr
	}
	if tr, ok := c.http.Transport.(*http.Transport); ok && c.tls != nil {
		tr.TLSClientConfig = c.tls
	}
	if c.managers.resolver == nil {
		return nil, errors.New("quorumq: no managers: use WithManagers or WithResolver")
	}
	return c, nil
}

func (c *Client) authorize(req *http.Request) {
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
}

// Close releases idle connections.
func (c *Client) Close() error {
	c.http.CloseIdleConnections()
	return nil
}

// managerSet picks the manager to talk to: the write manager first (fewer forwarding
// hops), then the others; a manager that just failed goes to the back of the line for
// a while, so that a stale "leader" tag in discovery does not pin us to a dead one.
type managerSet struct {
	resolver discovery.Resolver
	ttl      time.Duration // how long a resolved list is trusted
	penalty  time.Duration // how long a failed manager stays at the back

	mu      sync.Mutex
	addrs   []string
	fetched time.Time
	bad     map[string]time.Time
}

func instanceAddr(in discovery.Instance) string {
	if a := in.Meta[discovery.MetaHTTPAddr]; a != "" {
		return a
	}
	return in.Addr
}

// pick returns the manager to try next.
func (m *managerSet) pick(ctx context.Context) (string, error) {
	m.mu.Lock()
	stale := len(m.addrs) == 0 || time.Since(m.fetched) > m.ttl
	m.mu.Unlock()
	if stale {
		ins, err := m.resolver.Healthy(ctx, discovery.ServiceManager)
		if err != nil {
			m.mu.Lock()
			known := len(m.addrs) > 0
			m.mu.Unlock()
			if !known {
				return "", fmt.Errorf("%w: %w", ErrDiscovery, err)
			}
			// Discovery is down (a Consul agent restarting): the managers we knew of
			// are still the best guess, and failed() keeps rotating through them.
			ins = nil
		}
		slices.SortStableFunc(ins, func(a, b discovery.Instance) int {
			switch la, lb := a.HasTag(discovery.TagLeader), b.HasTag(discovery.TagLeader); {
			case la && !lb:
				return -1
			case lb && !la:
				return 1
			}
			return strings.Compare(a.ID, b.ID)
		})
		addrs := make([]string, 0, len(ins))
		for _, in := range ins {
			addrs = append(addrs, instanceAddr(in))
		}
		m.mu.Lock()
		if len(addrs) > 0 {
			m.addrs = addrs
		}
		m.fetched = time.Now()
		m.mu.Unlock()
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.addrs) == 0 {
		return "", ErrNoManagers
	}
	best, bestAt := "", time.Time{}
	for _, a := range m.addrs {
		at, failed := m.bad[a]
		if !failed || time.Since(at) > m.penalty {
			return a, nil
		}
		if best == "" || at.Before(bestAt) {
			best, bestAt = a, at
		}
	}
	return best, nil // all failed recently: the one that failed longest ago
}

// failed moves addr to the back and makes the next pick re-resolve, which is how a new
// write manager is found.
func (m *managerSet) failed(addr string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.bad[addr] = time.Now()
	m.fetched = time.Time{}
}

func (m *managerSet) succeeded(addr string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.bad, addr)
}

// call is one REST call: method, path, query and JSON body. out receives the success
// reply (may be nil).
type call struct {
	method string
	path   string
	query  url.Values
	body   any
	out    any
	// retried, when set, is told whether an attempt was made after another that may
	// have reached a manager.
	retried *bool
	// write marks a call that changes state: its failure says whether it may have
	// been applied (ErrNotApplied, ErrOutcomeUnknown).
	write bool
	// key, when set, goes with every attempt as the Idempotency-Key: the managers run
	// a metadata write once per key and answer a retry with the first outcome.
	key string
}

// metadataWrite is a call that changes the managers' metadata, under a fresh
// Idempotency-Key that all its attempts share.
func metadataWrite(method, path string, body, out any) call {
	return call{method: method, path: path, body: body, out: out, write: true, key: rand.Text()}
}

// do runs a call with retries until it succeeds, fails with an error a retry cannot
// fix, or the deadline passes. Every attempt sends the same bytes, which is what makes
// produce (producer_id + seq) and consume (offset) safe to repeat.
func (c *Client) do(ctx context.Context, cl call) error {
	ctx, cancel := c.bound(ctx)
	defer cancel()
	var body []byte
	if cl.body != nil {
		var err error
		if body, err = json.Marshal(cl.body); err != nil {
			return fmt.Errorf("quorumq: encoding request: %w", err)
		}
	}
	b := c.backoff()
	// last is the latest error a server or the network gave; an attempt cut short by
	// the deadline says nothing new, and the caller wants to know why it never worked.
	var last error
	start, noticed := time.Now(), false
	reached := false // an attempt may have reached a manager
	unknown := false // an attempt may have been applied
	for attempt := 1; ; attempt++ {
		addr, err := c.managers.pick(ctx)
		if err == nil {
			if cl.retried != nil && attempt > 1 && reached {
				*cl.retried = true
			}
			err = c.attempt(ctx, addr, cl, body)
			reached = reached || !notSent(err)
			if err == nil {
				c.managers.succeeded(addr)
				return nil
			}
			unknown = unknown || mayHaveApplied(err)
			if !retryable(err) {
				return cl.outcome(err, unknown)
			}
			c.managers.failed(addr)
		}
		if ctx.Err() == nil || last == nil {
			last = err
		}
		err = last
		if ctx.Err() != nil {
			return cl.outcome(fmt.Errorf("quorumq: %s %s: %w (last error: %w)", cl.method, cl.path, ctx.Err(), err), unknown)
		}
		c.log.Debug("quorumq: retrying", "method", cl.method, "path", cl.path, "manager", addr, "attempt", attempt, "err", err)
		if c.notice != nil && !noticed && time.Since(start) >= c.noticeAfter {
			noticed = true
			dl, _ := ctx.Deadline()
			c.notice(err, time.Until(dl))
		}
		if b.Wait(ctx) != nil {
			return cl.outcome(fmt.Errorf("quorumq: %s %s: %w (last error: %w)", cl.method, cl.path, ctx.Err(), err), unknown)
		}
	}
}

// backoff is the wait between attempts, jittered: clients that failed together (a
// failover) come back spread out.
func (c *Client) backoff() *retry.Backoff {
	return retry.Policy{First: c.minBackoff, Max: c.maxBackoff, Jitter: true}.Start()
}

// outcome makes the failure of a write say whether it may have been applied: unknown
// when any attempt may have been (mayHaveApplied), else not applied.
func (cl call) outcome(err error, unknown bool) error {
	switch {
	case !cl.write:
		return err
	case unknown:
		return withOutcome{err, ErrOutcomeUnknown}
	}
	return withOutcome{err, ErrNotApplied}
}

// withOutcome adds an outcome sentinel to an error without changing its text.
type withOutcome struct{ err, outcome error }

func (w withOutcome) Error() string   { return w.err.Error() }
func (w withOutcome) Unwrap() []error { return []error{w.err, w.outcome} }

// mayHaveApplied reports whether a failed attempt may have changed something: it was
// sent, and the server did not say it changed nothing. A server that does not say
// (the seed's) is taken at its status: 4xx refusals changed nothing.
func mayHaveApplied(err error) bool {
	var ae *APIError
	switch {
	case notSent(err):
		return false
	case errors.As(err, &ae) && ae.Outcome != "":
		return ae.Outcome != outcomeNotApplied
	case errors.As(err, &ae):
		return ae.Status >= 500
	}
	return true
}

// bound gives a context without a deadline the retry timeout.
func (c *Client) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); !ok && c.retryTimeout > 0 {
		return context.WithTimeout(ctx, c.retryTimeout)
	}
	return ctx, func() {}
}

// retryable: network trouble and server-side failures are; errors the caller caused
// (an *APIError with a 4xx) and a finished context are not.
func retryable(err error) bool {
	if errors.As(err, new(permanent)) {
		return false
	}
	var ae *APIError
	if errors.As(err, &ae) {
		return ae.retryable()
	}
	return !errors.Is(err, context.Canceled)
}

func (c *Client) attempt(ctx context.Context, addr string, cl call, body []byte) error {
	if c.requestTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.requestTimeout)
		defer cancel()
	}
	u := url.URL{Scheme: c.scheme, Host: addr, Path: cl.path, RawQuery: cl.query.Encode()}
	if strings.Contains(addr, "://") { // a full base URL, as httptest gives
		base, err := url.Parse(addr)
		if err != nil {
			return err
		}
		u.Scheme, u.Host = base.Scheme, base.Host
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, cl.method, u.String(), rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	if cl.key != "" {
		req.Header.Set("Idempotency-Key", cl.key)
	}
	c.authorize(req)
	var wrote atomic.Bool
	req = req.WithContext(httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{WroteHeaders: func() { wrote.Store(true) }}))
	resp, err := c.http.Do(req)
	if err != nil {
		if !wrote.Load() {
			return unsent{err}
		}
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode >= 300 {
		var f managerapi.Failure
		httpjson.DecodeFailure(resp.StatusCode, data, &f)
		return newAPIError(resp.StatusCode, f.Message, f.Code, f.Outcome)
	}
	var f managerapi.Failure
	if err := json.Unmarshal(data, &f); err != nil {
		// A 2xx that is not JSON is a broken proxy or manager: worth another try.
		return fmt.Errorf("quorumq: %s %s: undecodable reply %q: %w", cl.method, cl.path, truncate(data), err)
	}
	if f.Status == "failure" {
		return newAPIError(resp.StatusCode, f.Message, f.Code, f.Outcome)
	}
	if cl.out == nil {
		return nil
	}
	if err := json.Unmarshal(data, cl.out); err != nil {
		// Valid JSON of the wrong shape will not change on a retry.
		return permanent{fmt.Errorf("quorumq: %s %s: decoding reply: %w", cl.method, cl.path, err)}
	}
	return nil
}

// unsent is the failure of an attempt that wrote nothing to the server.
type unsent struct{ error }

func (u unsent) Unwrap() error { return u.error }

// notSent reports whether err shows that the request never reached a server: nothing
// was written, or the connection could not be made.
func notSent(err error) bool {
	var op *net.OpError
	return errors.As(err, new(unsent)) || errors.As(err, &op) && op.Op == "dial"
}

// permanent marks an error no retry can fix.
type permanent struct{ error }

func (p permanent) Unwrap() error { return p.error }

func truncate(b []byte) string {
	if len(b) > 200 {
		return string(b[:200]) + "..."
	}
	return string(b)
}
