package clientlib

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/quorumq/quorumq/discovery"
)

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func newTestClient(t *testing.T, opts ...Option) *Client {
	t.Helper()
	c, err := New(append([]Option{WithBackoff(time.Millisecond, 10*time.Millisecond)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// deadAddr is an address nothing listens on: connection refused.
func deadAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

func TestRetriesOn503ThenSucceeds(t *testing.T) {
	f, srv := newFake(t)
	f.fail = func(w http.ResponseWriter, r *http.Request, n int) bool {
		if n <= 2 {
			failure(w, http.StatusServiceUnavailable, "no quorum yet")
			return true
		}
		return false
	}
	c := newTestClient(t, WithManagers(srv.URL))
	if err := c.Admin().CreateTopic(testCtx(t), "orders", 3); err != nil {
		t.Fatalf("CreateTopic: %v", err)
	}
	if got := f.count("POST /topics"); got != 3 {
		t.Fatalf("POST /topics seen %d times, want 3 (two 503s, then success)", got)
	}
}

func TestNoRetryOnUserError(t *testing.T) {
	f, srv := newFake(t)
	c := newTestClient(t, WithManagers(srv.URL))
	err := c.Admin().CreateTopic(testCtx(t), "", 1)
	var ae *APIError
	if !errors.As(err, &ae) || ae.Status != http.StatusBadRequest {
		t.Fatalf("CreateTopic(\"\") = %v, want an *APIError with status 400", err)
	}
	if got := f.count("POST /topics"); got != 1 {
		t.Fatalf("POST /topics seen %d times, want 1: a 400 must not be retried", got)
	}
}

func TestGivesUpAtDeadline(t *testing.T) {
	f, srv := newFake(t)
	f.fail = func(w http.ResponseWriter, _ *http.Request, _ int) bool {
		failure(w, http.StatusServiceUnavailable, "not leader")
		return true
	}
	c := newTestClient(t, WithManagers(srv.URL))
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err := c.Admin().ListTopics(ctx)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("ListTopics = %v, want the deadline error", err)
	}
	var ae *APIError
	if !errors.As(err, &ae) || ae.Status != http.StatusServiceUnavailable {
		t.Fatalf("ListTopics = %v, want the last 503 kept in the error", err)
	}
	if f.count("GET /topics") < 2 {
		t.Fatal("no retry before the deadline")
	}
}

// The write manager dies (connection refused), the next one is between leaders (503),
// the third works: the call succeeds without the caller noticing.
func TestFollowsManagerChange(t *testing.T) {
	between := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		failure(w, http.StatusServiceUnavailable, "not leader")
	}))
	defer between.Close()
	f, good := newFake(t)
	c := newTestClient(t, WithManagers(deadAddr(t), between.URL, good.URL))
	ctx := testCtx(t)
	if err := c.Admin().CreateTopic(ctx, "t", 1); err != nil {
		t.Fatalf("CreateTopic: %v", err)
	}
	// Once found, the working manager stays the one in use.
	for range 5 {
		if _, err := c.Admin().ListTopics(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if got := f.count("GET /topics"); got != 5 {
		t.Fatalf("good manager saw %d lists, want 5", got)
	}
}

// With discovery, the client prefers the instance tagged leader and follows the tag.
func TestFollowsLeaderTag(t *testing.T) {
	f1, m1 := newFake(t)
	f2, m2 := newFake(t)
	reg := discovery.NewStatic(
		discovery.Instance{Service: discovery.ServiceManager, ID: "m1", Addr: strings.TrimPrefix(m1.URL, "http://"), Tags: []string{discovery.TagLeader}},
		discovery.Instance{Service: discovery.ServiceManager, ID: "m2", Addr: strings.TrimPrefix(m2.URL, "http://")},
	)
	c := newTestClient(t, WithResolver(reg))
	ctx := testCtx(t)
	if _, err := c.Admin().ListTopics(ctx); err != nil {
		t.Fatal(err)
	}
	if f1.count("GET /topics") != 1 || f2.count("GET /topics") != 0 {
		t.Fatal("the leader-tagged manager was not used first")
	}
	// m1 loses leadership: it answers "not leader" and the tag moves to m2.
	f1.fail = func(w http.ResponseWriter, _ *http.Request, _ int) bool {
		failure(w, http.StatusServiceUnavailable, "not leader")
		return true
	}
	reg.SetTag(ctx, discovery.ServiceManager, "m1", discovery.TagLeader, false)
	reg.SetTag(ctx, discovery.ServiceManager, "m2", discovery.TagLeader, true)
	if err := c.Admin().CreateTopic(ctx, "t", 1); err != nil {
		t.Fatal(err)
	}
	if f2.count("POST /topics") != 1 {
		t.Fatal("the new write manager did not get the write")
	}
}

func TestTypedErrors(t *testing.T) {
	cases := []struct {
		status int
		msg    string
		code   string
		want   error
	}{
		{404, "topic not found", "", ErrUnknownTopic},
		{404, "Topic orders does not exist", "", ErrUnknownTopic},
		{404, "producer not found", "", ErrUnknownProducer},
		{400, "unknown producer 7", "", ErrUnknownProducer},
		{404, "consumer not found", "", ErrUnknownConsumer},
		{404, "no message", "", ErrNoMessage},
		{404, "partition is empty", "", ErrNoMessage},
		{409, "topic already exists", "", ErrTopicExists},
		{400, "whatever", "unknown_topic", ErrUnknownTopic},
		{409, "partition moved meanwhile", "conflict", nil},
		{404, "no messages left", "no_message", ErrNoMessage},
		{400, "topic name is empty", "", nil},
		{503, "topic not found on this replica", "", nil}, // 5xx: retryable, no sentinel
	}
	for _, tc := range cases {
		t.Run(fmt.Sprintf("%d %s", tc.status, tc.msg), func(t *testing.T) {
			e := newAPIError(tc.status, tc.msg, tc.code, "")
			if e.Err != tc.want {
				t.Fatalf("maps to %v, want %v", e.Err, tc.want)
			}
			if tc.want != nil && !errors.Is(e, tc.want) {
				t.Fatal("errors.Is does not see the sentinel")
			}
		})
	}

	// And through a real reply, end to end.
	_, srv := newFake(t)
	c := newTestClient(t, WithManagers(srv.URL))
	ctx := testCtx(t)
	if _, err := c.Admin().DescribeTopic(ctx, "nope"); !errors.Is(err, ErrUnknownTopic) {
		t.Fatalf("DescribeTopic(nope) = %v, want ErrUnknownTopic", err)
	}
	if _, err := c.NewProducer(ctx, "nope"); !errors.Is(err, ErrUnknownTopic) {
		t.Fatalf("NewProducer(nope) = %v, want ErrUnknownTopic", err)
	}
	if err := c.Admin().CreateTopic(ctx, "t", 1); err != nil {
		t.Fatal(err)
	}
	if err := c.Admin().CreateTopic(ctx, "t", 1); !errors.Is(err, ErrTopicExists) {
		t.Fatalf("second CreateTopic = %v, want ErrTopicExists", err)
	}
	cs, err := c.NewConsumer(ctx, "t", WithConsumerID("999"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cs.Next(ctx); !errors.Is(err, ErrUnknownConsumer) {
		t.Fatalf("Next of an unknown consumer = %v, want ErrUnknownConsumer", err)
	}
}

func TestAdmin(t *testing.T) {
	_, srv := newFake(t)
	c := newTestClient(t, WithManagers(srv.URL))
	ctx := testCtx(t)
	if err := c.Admin().CreateTopic(ctx, "a", 3); err != nil {
		t.Fatal(err)
	}
	names, err := c.Admin().ListTopics(ctx)
	if err != nil || len(names) != 1 || names[0] != "a" {
		t.Fatalf("ListTopics = %v, %v", names, err)
	}
	info, err := c.Admin().DescribeTopic(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	if info.Name != "a" || len(info.Partitions) != 3 || info.Partitions[2].ID != 2 || info.Partitions[0].Leader != "b1" {
		t.Fatalf("DescribeTopic = %+v", info)
	}
}

// flakyResolver answers once, then fails, as a restarting Consul agent would.
type flakyResolver struct {
	discovery.Resolver
	calls int
}

func (r *flakyResolver) Healthy(ctx context.Context, service string) ([]discovery.Instance, error) {
	r.calls++
	if r.calls > 1 {
		return nil, errors.New("consul: agent unreachable")
	}
	return r.Resolver.Healthy(ctx, service)
}

func TestDiscoveryOutageKeepsKnownManagers(t *testing.T) {
	between := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		failure(w, http.StatusServiceUnavailable, "not leader")
	}))
	defer between.Close()
	_, good := newFake(t)
	r := &flakyResolver{Resolver: discovery.NewStatic(
		discovery.Instance{Service: discovery.ServiceManager, ID: "m1", Addr: between.URL},
		discovery.Instance{Service: discovery.ServiceManager, ID: "m2", Addr: good.URL},
	)}
	c := newTestClient(t, WithResolver(r))
	if _, err := c.Admin().ListTopics(testCtx(t)); err != nil {
		t.Fatalf("ListTopics with discovery down after the first answer: %v", err)
	}
	if r.calls < 2 {
		t.Fatal("the failure did not make the client ask discovery again")
	}
}

// TestCreateTopicRetryAfterLostReply: a create whose reply was lost (the write manager
// died answering) and that the retry finds done is the caller's success, not a
// conflict; a topic that existed before the first attempt still is one.
func TestCreateTopicRetryAfterLostReply(t *testing.T) {
	f, srv := newFake(t)
	f.drop = func(r *http.Request, n int) bool { return r.URL.Path == "/topics" && n == 1 }
	c := newTestClient(t, WithManagers(srv.URL))
	ctx := testCtx(t)
	if err := c.Admin().CreateTopic(ctx, "orders", 3); err != nil {
		t.Fatalf("CreateTopic after a lost reply: %v", err)
	}
	if got := f.count("POST /topics"); got != 2 {
		t.Fatalf("POST /topics seen %d times, want 2", got)
	}
	if err := c.Admin().CreateTopic(ctx, "orders", 3); !errors.Is(err, ErrTopicExists) {
		t.Fatalf("CreateTopic of an existing topic = %v, want ErrTopicExists", err)
	}
}

// TestWriteOutcomes: a failed write says whether it may have been applied: unknown as
// soon as one attempt may have been (a lost reply, a 5xx that does not say), else not
// applied.
func TestWriteOutcomes(t *testing.T) {
	answer := func(status int, outcome string) func(http.ResponseWriter, *http.Request, int) bool {
		return func(w http.ResponseWriter, r *http.Request, n int) bool {
			if r.Method != http.MethodPost {
				return false
			}
			body := map[string]any{"status": "failure", "message": "refused"}
			if outcome != "" {
				body["outcome"] = outcome
			}
			reply(w, status, body)
			return true
		}
	}
	// The first two attempts get the answer under test, the others a 409 that ends the
	// call (not applied): the outcome depends on the attempts before.
	then409 := func(first func(http.ResponseWriter, *http.Request, int) bool) func(http.ResponseWriter, *http.Request, int) bool {
		return func(w http.ResponseWriter, r *http.Request, n int) bool {
			if n > 2 {
				return answer(http.StatusConflict, "not_applied")(w, r, n)
			}
			return first != nil && first(w, r, n)
		}
	}
	for _, tc := range []struct {
		name    string
		fail    func(http.ResponseWriter, *http.Request, int) bool
		drop    func(*http.Request, int) bool
		dead    bool
		unknown bool
	}{
		{name: "refused", fail: answer(http.StatusConflict, "not_applied")},
		{name: "503 not applied", fail: then409(answer(http.StatusServiceUnavailable, "not_applied"))},
		{name: "503 unknown", fail: then409(answer(http.StatusServiceUnavailable, "unknown")), unknown: true},
		{name: "503 from a manager that does not say", fail: then409(answer(http.StatusServiceUnavailable, "")), unknown: true},
		{name: "400 from a manager that does not say", fail: answer(http.StatusBadRequest, "")},
		{name: "no manager reachable", dead: true},
		{name: "reply lost", drop: func(r *http.Request, n int) bool { return n == 1 }, fail: then409(nil), unknown: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, srv := newFake(t)
			addr := srv.URL
			if tc.dead {
				addr = deadAddr(t)
			}
			f.fail, f.drop = tc.fail, tc.drop
			c := newTestClient(t, WithManagers(addr))
			ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
			defer cancel()
			err := c.Admin().AddPartitions(ctx, "orders", 1)
			if err == nil || errors.Is(err, ErrOutcomeUnknown) != tc.unknown || errors.Is(err, ErrNotApplied) == tc.unknown {
				t.Fatalf("AddPartitions = %v; unknown %v, not applied %v; want unknown %v",
					err, errors.Is(err, ErrOutcomeUnknown), errors.Is(err, ErrNotApplied), tc.unknown)
			}
		})
	}
}

// TestMetadataWritesSendOneKey: every attempt of a metadata write carries the same
// Idempotency-Key, and another write another key.
func TestMetadataWritesSendOneKey(t *testing.T) {
	f, srv := newFake(t)
	var mu sync.Mutex
	keys := map[string][]string{} // path → keys seen
	f.fail = func(w http.ResponseWriter, r *http.Request, n int) bool {
		if r.Method != http.MethodPost {
			return false
		}
		mu.Lock()
		keys[r.URL.Path] = append(keys[r.URL.Path], r.Header.Get("Idempotency-Key"))
		mu.Unlock()
		switch {
		case n%3 != 0: // two failures, then the fake answers
			failure(w, http.StatusServiceUnavailable, "no quorum yet")
			return true
		case strings.HasSuffix(r.URL.Path, "/partitions"): // a route the fake lacks
			reply(w, http.StatusOK, nil)
			return true
		}
		return false
	}
	c := newTestClient(t, WithManagers(srv.URL))
	ctx := testCtx(t)
	if err := c.Admin().CreateTopic(ctx, "orders", 1); err != nil {
		t.Fatal(err)
	}
	if err := c.Admin().AddPartitions(ctx, "orders", 1); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := c.NewProducer(ctx, "orders"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.NewConsumer(ctx, "orders"); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	seen := map[string]bool{}
	for path, ks := range keys {
		for i := 0; i < len(ks); i += 3 {
			call := ks[i:min(i+3, len(ks))]
			if call[0] == "" || len(call) != 3 || call[1] != call[0] || call[2] != call[0] {
				t.Fatalf("%s: keys of one call %q, want one key three times", path, call)
			}
			if seen[call[0]] {
				t.Fatalf("%s: key %s used by two calls", path, call[0])
			}
			seen[call[0]] = true
		}
	}
	if len(seen) != 5 {
		t.Fatalf("%d keys for 5 writes: %v", len(seen), keys)
	}
}
