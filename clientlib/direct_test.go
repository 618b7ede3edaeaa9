package clientlib

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/quorumq/quorumq/broker/brokerapi"
)

// fakeBroker is the produce side of a broker (broker/produce_http.go): the binary body,
// dedup by producer_id + seq per partition, and hooks to answer otherwise.
type fakeBroker struct {
	srv  *httptest.Server
	addr string // host:port, as the managers list brokers

	mu      sync.Mutex
	parts   map[int][]string
	last    map[string][2]uint64 // "producer/partition" → {seq, first offset}
	calls   int
	leader  *fakeBroker                             // set: this broker is a follower and names leader (421)
	answer  func(w http.ResponseWriter, n int) bool // may answer request n itself
	dropped func(n int) bool                        // store request n, then lose the reply
}

func newFakeBroker(t *testing.T) *fakeBroker {
	b := &fakeBroker{parts: map[int][]string{}, last: map[string][2]uint64{}}
	b.srv = httptest.NewServer(b)
	t.Cleanup(b.srv.Close)
	b.addr = strings.TrimPrefix(b.srv.URL, "http://")
	return b
}

func (b *fakeBroker) count() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.calls
}

func (b *fakeBroker) messages(p int) []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.parts[p])
}

func (b *fakeBroker) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if r.Method != http.MethodPost || r.URL.Path != "/produce" || r.Header.Get("Content-Type") != brokerapi.MIMEBatch {
		failure(w, 400, "this fake takes binary produce only")
		return
	}
	b.calls++
	if b.answer != nil && b.answer(w, b.calls) {
		return
	}
	if b.leader != nil {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusMisdirectedRequest)
		fmt.Fprintf(w, `{"status":"failure","message":"not the leader","leader":{"id":"?","raft_addr":"x","http_addr":%q}}`, b.leader.addr)
		return
	}
	q := r.URL.Query()
	part, err := strconv.Atoi(q.Get("partition"))
	seq, err2 := strconv.ParseUint(q.Get("seq"), 10, 64)
	body, err3 := io.ReadAll(r.Body)
	if err != nil || err2 != nil || err3 != nil || q.Get("producer_id") == "" {
		failure(w, 400, "bad produce")
		return
	}
	var msgs []string
	for len(body) > 0 {
		l, k := binary.Uvarint(body)
		msgs, body = append(msgs, string(body[k:k+int(l)])), body[k+int(l):]
	}
	first, ok := b.storeLocked(q.Get("producer_id"), part, seq, msgs)
	if !ok {
		failure(w, 409, "stale seq")
		return
	}
	if b.dropped != nil && b.dropped(b.calls) {
		if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
			conn.Close()
		}
		return
	}
	reply(w, 200, map[string]any{"offset": first, "count": len(msgs)})
}

// store appends msgs as producer's batch seq, or recognises its retry; ok is false
// for a seq older than the producer's last.
func (b *fakeBroker) store(producer string, part int, seq uint64, msgs []string) (first uint64, ok bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.storeLocked(producer, part, seq, msgs)
}

func (b *fakeBroker) storeLocked(producer string, part int, seq uint64, msgs []string) (first uint64, ok bool) {
	key := fmt.Sprintf("%s/%d", producer, part)
	last, seen := b.last[key]
	switch {
	case seen && last[0] == seq:
		return last[1], true
	case seen && seq < last[0]:
		return 0, false
	}
	first = uint64(len(b.parts[part]))
	b.last[key] = [2]uint64{seq, first}
	b.parts[part] = append(b.parts[part], msgs...)
	return first, true
}

// directSetup is a fake manager whose metadata names b1 as every partition's leader,
// and the brokers b1 (the leader) and b2 (a follower) at the given fakes.
func directSetup(t *testing.T, opts ...Option) (*fakeManager, *fakeBroker, *fakeBroker, *Client) {
	f, srv := newFake(t)
	b1, b2 := newFakeBroker(t), newFakeBroker(t)
	b2.leader = b1
	f.brokers = map[string]string{"b1": b1.addr, "b2": b2.addr}
	c := newTestClient(t, append([]Option{WithManagers(srv.URL)}, opts...)...)
	if err := c.Admin().CreateTopic(testCtx(t), "orders", 2); err != nil {
		t.Fatal(err)
	}
	return f, b1, b2, c
}

func values(prefix string, n int) []Record {
	out := make([]Record, n)
	for i := range out {
		out[i] = Record{Value: fmt.Sprintf("%s%02d", prefix, i)}
	}
	return out
}

// TestDirectProduceSkipsManager: batches go to the leader broker with the producer
// name and seq the managers would use; a lost reply is retried without a duplicate,
// and the managers' produce route is never hit.
func TestDirectProduceSkipsManager(t *testing.T) {
	f, b1, b2, c := directSetup(t)
	b1.dropped = func(n int) bool { return n == 2 }
	ctx := testCtx(t)
	p, err := c.NewProducer(ctx, "orders", ToPartition(1))
	if err != nil {
		t.Fatal(err)
	}
	want := values("m", 12)
	for i := 0; i < len(want); i += 4 {
		pos, err := p.SendBatch(ctx, want[i:i+4])
		if err != nil {
			t.Fatalf("batch %d: %v", i/4, err)
		}
		if pos[0].Partition != 1 || pos[0].Offset != int64(i) || pos[3].Offset != int64(i+3) {
			t.Fatalf("batch %d landed at %+v", i/4, pos)
		}
	}
	if err := p.SendAsync(ctx, Record{Value: "async"}); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(ctx); err != nil {
		t.Fatal(err)
	}
	got := b1.messages(1)
	wantVals := append(valuesOf(want), "async")
	if !slices.Equal(got, wantVals) {
		t.Fatalf("broker has %v, want %v", got, wantVals)
	}
	if n := f.count("POST /producer/produce"); n != 0 {
		t.Fatalf("the managers' produce route was hit %d times", n)
	}
	if b2.count() > 1 {
		t.Fatalf("b2, a follower, was asked %d times; want at most once (when the lost reply made b1 look down)", b2.count())
	}
	b1.mu.Lock()
	defer b1.mu.Unlock()
	if last := b1.last[fmt.Sprintf("p%s/1", p.ID())]; last[0] != 3 {
		t.Fatalf("last seq of p%s on partition 1 = %d, want 3 (three batches and the async one, the lost reply's retry kept seq 1)", p.ID(), last[0])
	}
}

func valuesOf(rs []Record) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.Value
	}
	return out
}

// TestDirectFollowsLeadership: a broker that is not the leader names it (421), a
// partition without a leader answers 503 until it has one; the producer follows and
// keeps sending to the leader it found.
func TestDirectFollowsLeadership(t *testing.T) {
	f, b1, b2, c := directSetup(t)
	b1.leader, b2.leader = b2, nil // the metadata is behind: b2 leads now
	b2.answer = func(w http.ResponseWriter, n int) bool {
		if n > 3 {
			return false
		}
		failure(w, http.StatusServiceUnavailable, "partition orders/0 has no leader right now; retry")
		return true
	}
	ctx := testCtx(t)
	p, err := c.NewProducer(ctx, "orders", ToPartition(0))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range values("v", 5) {
		if _, err := p.Send(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	if got, want := b2.messages(0), valuesOf(values("v", 5)); !slices.Equal(got, want) {
		t.Fatalf("leader has %v, want %v", got, want)
	}
	// b1 is asked in the first rounds (while b2 has no leader yet, it names none), not after.
	before := b1.count()
	if _, err := p.Send(ctx, Record{Value: "more"}); err != nil {
		t.Fatal(err)
	}
	if b1.count() != before {
		t.Fatalf("b1 asked again after b2 acknowledged as the leader")
	}
	if n := f.count("POST /producer/produce"); n != 0 {
		t.Fatalf("the managers' produce route was hit %d times", n)
	}
}

// TestDirectRefusalIsTyped: a broker's refusal of what was sent (413) is the caller's
// error at once, as the managers would have passed it on.
func TestDirectRefusalIsTyped(t *testing.T) {
	_, b1, _, c := directSetup(t)
	b1.answer = func(w http.ResponseWriter, n int) bool {
		failure(w, http.StatusRequestEntityTooLarge, "message 0 is 5 bytes; the limit is 4")
		return true
	}
	ctx := testCtx(t)
	p, err := c.NewProducer(ctx, "orders")
	if err != nil {
		t.Fatal(err)
	}
	_, err = p.Send(ctx, Record{Value: "hello"})
	var ae *APIError
	if !errors.As(err, &ae) || ae.Status != http.StatusRequestEntityTooLarge || b1.count() != 1 {
		t.Fatalf("Send = %v after %d broker requests; want a 413 APIError after one", err, b1.count())
	}
	if !errors.Is(err, ErrNotApplied) || errors.Is(err, ErrOutcomeUnknown) {
		t.Fatalf("Send = %v: a refusal must say it was not applied", err)
	}
	if n := strings.Count(err.Error(), "(HTTP 413)"); n != 1 {
		t.Fatalf("Send = %q: the status appears %d times", err, n)
	}
}

// TestDirectProduceFallback: with WithDirectProduce(false), or when no broker can be
// reached, batches go through the managers, once each.
func TestDirectProduceFallback(t *testing.T) {
	for _, tc := range []struct {
		name        string
		opts        []Option
		unreachable bool
	}{
		{name: "option off", opts: []Option{WithDirectProduce(false)}},
		{name: "brokers unreachable", unreachable: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, b1, b2, c := directSetup(t, tc.opts...)
			if tc.unreachable {
				f.mu.Lock()
				f.brokers = map[string]string{"b1": deadAddr(t), "b2": deadAddr(t)}
				f.mu.Unlock()
			}
			ctx := testCtx(t)
			p, err := c.NewProducer(ctx, "orders", ToPartition(0))
			if err != nil {
				t.Fatal(err)
			}
			want := values("f", 6)
			for i := 0; i < len(want); i += 2 {
				if _, err := p.SendBatch(ctx, want[i:i+2]); err != nil {
					t.Fatal(err)
				}
			}
			if got := f.messages("orders", 0); !slices.Equal(got, valuesOf(want)) {
				t.Fatalf("managers stored %v, want %v", got, valuesOf(want))
			}
			if n := f.count("POST /producer/produce"); n != 3 {
				t.Fatalf("managers' produce route hit %d times, want 3", n)
			}
			if b1.count()+b2.count() != 0 {
				t.Fatalf("brokers asked %d times", b1.count()+b2.count())
			}
		})
	}
}

// TestDirectExactlyOnceAcrossPaths: asynchronous sends while the leader loses replies
// and has no leader now and then, and then the brokers become unreachable from the
// client (not from the managers, which lose replies too): every record is stored once, in order, whichever path
// each of its batch's attempts took.
func TestDirectExactlyOnceAcrossPaths(t *testing.T) {
	f, b1, b2, c := directSetup(t)
	f.forward = b1.store
	rnd := rand.New(rand.NewPCG(1, 2))
	var rmu sync.Mutex
	chance := func() float64 {
		rmu.Lock()
		defer rmu.Unlock()
		return rnd.Float64()
	}
	b1.answer = func(w http.ResponseWriter, _ int) bool {
		if chance() < 0.1 {
			failure(w, http.StatusServiceUnavailable, "partition orders/0 has no leader right now; retry")
			return true
		}
		return false
	}
	b1.dropped = func(int) bool { return chance() < 0.2 }
	f.drop = func(r *http.Request, _ int) bool { return r.URL.Path == "/producer/produce" && chance() < 0.2 }
	ctx := testCtx(t)
	p, err := c.NewProducer(ctx, "orders", ToPartition(0), WithBatchSize(7))
	if err != nil {
		t.Fatal(err)
	}
	want := values("x", 300)
	for i, r := range want {
		if i == 200 {
			if err := p.Flush(ctx); err != nil {
				t.Fatal(err)
			}
			b1.srv.Close() // the managers still reach b1: f.forward
			b2.srv.Close()
		}
		if err := p.SendAsync(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if got := b1.messages(0); !slices.Equal(got, valuesOf(want)) {
		t.Fatalf("partition holds %d messages, want the %d sent once each, in order:\n%v", len(got), len(want), got)
	}
	direct, managed := b1.count(), f.count("POST /producer/produce")
	if direct == 0 || managed == 0 {
		t.Fatalf("%d direct and %d managed produce requests; want both paths used", direct, managed)
	}
	t.Logf("%d direct and %d managed produce requests", direct, managed)
}
