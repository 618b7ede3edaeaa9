package clientlib

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"testing"
)

func produceN(t *testing.T, c *Client, topic string, n int) {
	t.Helper()
	p, err := c.NewProducer(testCtx(t), topic, ToPartition(0))
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if _, err := p.Send(testCtx(t), Record{Value: strconv.Itoa(i)}); err != nil {
			t.Fatal(err)
		}
	}
}

// drain polls cs until it returns nothing and gives the values read.
func drain(ctx context.Context, t *testing.T, cs *Consumer, batch int) []string {
	t.Helper()
	var got []string
	for {
		msgs, err := cs.Poll(ctx, batch)
		if err != nil {
			t.Fatal(err)
		}
		if len(msgs) == 0 {
			return got
		}
		for _, m := range msgs {
			got = append(got, m.Value)
		}
	}
}

// The manager advances the consumer and the reply is lost: the retry names the old
// offset and gets the same message, so nothing is skipped.
func TestLostConsumeReplyReturnsSameMessage(t *testing.T) {
	for _, batch := range []int{1, 2} {
		t.Run(fmt.Sprintf("max=%d", batch), func(t *testing.T) {
			f, srv := newFake(t)
			c := newTestClient(t, WithManagers(srv.URL))
			ctx := testCtx(t)
			if err := c.Admin().CreateTopic(ctx, "t", 1); err != nil {
				t.Fatal(err)
			}
			produceN(t, c, "t", 4)
			cs, err := c.NewConsumer(ctx, "t")
			if err != nil {
				t.Fatal(err)
			}
			f.drop = func(r *http.Request, n int) bool { return r.URL.Path == "/consumer/consume" && n == 1 }
			if got := drain(ctx, t, cs, batch); fmt.Sprint(got) != "[0 1 2 3]" {
				t.Fatalf("consumed %v, want [0 1 2 3]", got)
			}
			if _, err := cs.Next(ctx); !errors.Is(err, ErrNoMessage) {
				t.Fatalf("Next at the end = %v, want ErrNoMessage", err)
			}
		})
	}
}

func TestConsumerReadsEveryPartition(t *testing.T) {
	_, srv := newFake(t)
	c := newTestClient(t, WithManagers(srv.URL))
	ctx := testCtx(t)
	if err := c.Admin().CreateTopic(ctx, "t", 3); err != nil {
		t.Fatal(err)
	}
	p, err := c.NewProducer(ctx, "t")
	if err != nil {
		t.Fatal(err)
	}
	for i := range 9 {
		if _, err := p.Send(ctx, Record{Value: strconv.Itoa(i)}); err != nil {
			t.Fatal(err)
		}
	}
	cs, err := c.NewConsumer(ctx, "t")
	if err != nil {
		t.Fatal(err)
	}
	if size, err := cs.Size(ctx); err != nil || size != 9 {
		t.Fatalf("Size = %d, %v; want 9", size, err)
	}
	seen := map[string]int{}
	for {
		m, err := cs.Next(ctx)
		if errors.Is(err, ErrNoMessage) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		seen[m.Value]++
		if m.Offset < 0 {
			t.Fatalf("message %+v has no offset", m)
		}
	}
	if len(seen) != 9 {
		t.Fatalf("consumed %v, want 9 distinct messages", seen)
	}
	for v, n := range seen {
		if n != 1 {
			t.Fatalf("%s consumed %d times", v, n)
		}
	}
	if size, _ := cs.Size(ctx); size != 0 {
		t.Fatalf("Size after reading all = %d", size)
	}
}

// A resumed consumer numbers its calls: the retry of a call whose reply was lost
// carries the same seq and gets the same messages, so nothing is skipped.
func TestResumedConsumerLostReply(t *testing.T) {
	f, srv := newFake(t)
	c := newTestClient(t, WithManagers(srv.URL))
	ctx := testCtx(t)
	if err := c.Admin().CreateTopic(ctx, "t", 1); err != nil {
		t.Fatal(err)
	}
	produceN(t, c, "t", 4)
	first, err := c.NewConsumer(ctx, "t")
	if err != nil {
		t.Fatal(err)
	}
	cs, err := c.NewConsumer(ctx, "t", WithConsumerID(first.ID()))
	if err != nil {
		t.Fatal(err)
	}
	var seqs []string
	f.drop = func(r *http.Request, n int) bool {
		if r.URL.Path != "/consumer/consume" {
			return false
		}
		seqs = append(seqs, r.URL.Query().Get("seq"))
		return n == 1 // the first call's reply is lost: its partition's offset is not known yet
	}
	if got := drain(ctx, t, cs, 2); fmt.Sprint(got) != "[0 1 2 3]" {
		t.Fatalf("consumed %v, want [0 1 2 3]", got)
	}
	if len(seqs) < 3 || seqs[0] == "" || seqs[0] != seqs[1] || seqs[1] == seqs[2] {
		t.Fatalf("seqs sent %v: want one per call, the lost one twice", seqs)
	}
}
