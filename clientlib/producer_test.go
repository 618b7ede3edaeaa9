package clientlib

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"testing"
)

// A produce whose reply is lost is retried with the same seq and not appended twice.
func TestLostProduceReplyIsNotDuplicated(t *testing.T) {
	f, srv := newFake(t)
	c := newTestClient(t, WithManagers(srv.URL))
	ctx := testCtx(t)
	if err := c.Admin().CreateTopic(ctx, "t", 1); err != nil {
		t.Fatal(err)
	}
	f.drop = func(r *http.Request, n int) bool { return r.URL.Path == "/producer/produce" && n == 1 }
	p, err := c.NewProducer(ctx, "t")
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"a", "b"} {
		if _, err := p.Send(ctx, Record{Value: v}); err != nil {
			t.Fatal(err)
		}
	}
	if got := f.messages("t", 0); fmt.Sprint(got) != "[a b]" {
		t.Fatalf("partition holds %v, want [a b]", got)
	}
	if f.count("POST /producer/produce") != 3 {
		t.Fatalf("produce requests = %d, want 3 (one lost reply, one retry, one more)", f.count("POST /producer/produce"))
	}
}

func TestKeysPickStablePartitions(t *testing.T) {
	_, srv := newFake(t)
	c := newTestClient(t, WithManagers(srv.URL))
	ctx := testCtx(t)
	if err := c.Admin().CreateTopic(ctx, "t", 4); err != nil {
		t.Fatal(err)
	}
	p, err := c.NewProducer(ctx, "t")
	if err != nil {
		t.Fatal(err)
	}
	recs := []Record{{Key: "x", Value: "1"}, {Key: "y", Value: "2"}, {Key: "x", Value: "3"}, {Value: "4"}}
	pos, err := p.SendBatch(ctx, recs)
	if err != nil {
		t.Fatal(err)
	}
	if pos[0].Partition != pos[2].Partition {
		t.Fatalf("same key went to partitions %d and %d", pos[0].Partition, pos[2].Partition)
	}
	if pos[2].Offset != pos[0].Offset+1 {
		t.Fatalf("same-key offsets %d then %d, want consecutive", pos[0].Offset, pos[2].Offset)
	}
}

// Async sends under random 503s and lost replies: every record lands exactly once, in
// order within its partition.
func TestSendAsyncExactlyOnceUnderFaults(t *testing.T) {
	f, srv := newFake(t)
	c := newTestClient(t, WithManagers(srv.URL))
	ctx := testCtx(t)
	const parts, n = 3, 2000
	if err := c.Admin().CreateTopic(ctx, "t", parts); err != nil {
		t.Fatal(err)
	}
	var rmu sync.Mutex
	rng := rand.New(rand.NewPCG(1, 2))
	chance := func() float64 { rmu.Lock(); defer rmu.Unlock(); return rng.Float64() }
	f.fail = func(w http.ResponseWriter, r *http.Request, _ int) bool {
		if r.URL.Path == "/producer/produce" && chance() < 0.2 {
			failure(w, http.StatusServiceUnavailable, "partition leader changing")
			return true
		}
		return false
	}
	f.drop = func(r *http.Request, _ int) bool { return r.URL.Path == "/producer/produce" && chance() < 0.2 }
	p, err := c.NewProducer(ctx, "t", WithBatchSize(50), WithMaxPending(300))
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if err := p.SendAsync(ctx, Record{Key: strconv.Itoa(i % 10), Value: strconv.Itoa(i)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	seen := map[string]bool{}
	for part := range parts {
		last := map[int]int{} // key → last value seen: values of one key must rise
		for _, v := range f.messages("t", part) {
			if seen[v] {
				t.Fatalf("%s appended twice", v)
			}
			seen[v] = true
			i, _ := strconv.Atoi(v)
			if prev, ok := last[i%10]; ok && prev > i {
				t.Fatalf("partition %d: %d after %d for the same key", part, i, prev)
			}
			last[i%10] = i
		}
	}
	if len(seen) != n {
		t.Fatalf("%d distinct records landed, want %d", len(seen), n)
	}
	if err := p.SendAsync(ctx, Record{Value: "late"}); err != ErrClosed {
		t.Fatalf("SendAsync after Close = %v, want ErrClosed", err)
	}
}
