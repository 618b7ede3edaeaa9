package broker_test

import (
	"context"
	"errors"
	"math"
	"net/http"
	"strings"
	"testing"

	"github.com/quorumq/quorumq/broker"
	"github.com/quorumq/quorumq/broker/brokerclient"
)

// TestProducerSequences: a producer's batches need a seq, and an absurd one is
// refused instead of poisoning the producer (seq 2^64-1 made every later batch
// of producer 5 stale); a batch without a producer is never a duplicate.
func TestProducerSequences(t *testing.T) {
	b, cl := startBroker(t)
	ctx := context.Background()
	part := 0
	seq := func(n uint64) *uint64 { return &n }
	status := func(err error) int {
		var be *brokerclient.Error
		if errors.As(err, &be) {
			return be.Code
		}
		if err != nil {
			t.Fatalf("not a broker's answer: %v", err)
		}
		return http.StatusOK
	}
	steps := []struct {
		name string
		send func() error
		want int
	}{
		{"max seq", func() error {
			_, err := cl.Produce(ctx, "t", 0, "p5", math.MaxUint64, []string{"x"})
			return err
		}, 400},
		{"producer not poisoned", func() error {
			_, err := cl.Produce(ctx, "t", 0, "p5", 0, []string{"a"})
			return err
		}, 200},
		{"next seq", func() error {
			_, err := cl.Produce(ctx, "t", 0, "p5", 1, []string{"b"})
			return err
		}, 200},
		{"furthest seq ahead", func() error {
			_, err := cl.Produce(ctx, "t", 0, "p5", 1+broker.MaxSeqAhead, []string{"c"})
			return err
		}, 200},
		{"one past the furthest", func() error {
			_, err := cl.Produce(ctx, "t", 0, "p5", 2+2*broker.MaxSeqAhead, []string{"d"})
			return err
		}, 400},
		{"first seq of a new producer too far", func() error {
			_, err := cl.Produce(ctx, "t", 0, "p6", broker.MaxSeqAhead+1, []string{"e"})
			return err
		}, 400},
		{"JSON producer without seq", func() error {
			return cl.Do(ctx, "POST", b.HTTPAddr(), "/produce", broker.ProduceRequest{Topic: "t", Partition: &part, ProducerID: "p7", Messages: []string{"f"}}, nil)
		}, 400},
		{"binary producer without seq", func() error {
			resp, err := http.Post("http://"+b.HTTPAddr()+"/produce?topic=t&partition=0&producer_id=p7", broker.MIMEBatch, strings.NewReader(string(broker.AppendBatch(nil, "g"))))
			if err != nil {
				return err
			}
			resp.Body.Close()
			return &brokerclient.Error{Code: resp.StatusCode}
		}, 400},
		{"JSON seq 0", func() error {
			return cl.Do(ctx, "POST", b.HTTPAddr(), "/produce", broker.ProduceRequest{Topic: "t", Partition: &part, ProducerID: "p8", Seq: seq(0), Messages: []string{"h"}}, nil)
		}, 200},
		{"JSON seq 0 again is a retry", func() error {
			return cl.Do(ctx, "POST", b.HTTPAddr(), "/produce", broker.ProduceRequest{Topic: "t", Partition: &part, ProducerID: "p8", Seq: seq(0), Messages: []string{"h"}}, nil)
		}, 200},
		{"no producer", func() error {
			_, err := cl.Produce(ctx, "t", 0, "", 0, []string{"i"})
			return err
		}, 200},
		{"no producer again", func() error {
			_, err := cl.Produce(ctx, "t", 0, "", 0, []string{"j"})
			return err
		}, 200},
	}
	for _, s := range steps {
		if got := status(s.send()); got != s.want {
			t.Fatalf("%s: status %d, want %d", s.name, got, s.want)
		}
	}
	if _, err := cl.Register(ctx, "t", 0, "c"); err != nil {
		t.Fatal(err)
	}
	got, err := cl.Consume(ctx, "t", 0, "c", 0, 100)
	if err != nil || strings.Join(got.Messages, ",") != "a,b,c,h,i,j" {
		t.Fatalf("stored: %+v %v, want a,b,c,h,i,j", got, err)
	}
}
