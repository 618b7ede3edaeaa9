package broker_test

import (
	"context"
	"errors"
	"math"
	"net/http"
	"strings"
	"testing"

	"github.com/quorumq/quorumq/broker"
	"github.com/quorumq/quorumq/broker/brokerapi"
	"github.com/quorumq/quorumq/internal/brokerclient"
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
	produce := func(producer string, seq uint64, msg string) func() error {
		return func() error {
			_, err := cl.Produce(ctx, "t", 0, producer, seq, []string{msg})
			return err
		}
	}
	produceJSON := func(producer string, seq *uint64, msg string) func() error {
		return func() error {
			req := brokerapi.ProduceRequest{Topic: "t", Partition: &part, ProducerID: producer, Seq: seq, Messages: []string{msg}}
			return cl.Do(ctx, "POST", b.HTTPAddr(), "/produce", req, nil)
		}
	}
	steps := []struct {
		name string
		send func() error
		want int
	}{
		{"max seq", produce("p5", math.MaxUint64, "x"), 400},
		{"producer not poisoned", produce("p5", 0, "a"), 200},
		{"next seq", produce("p5", 1, "b"), 200},
		{"furthest seq ahead", produce("p5", 1+broker.MaxSeqAhead, "c"), 200},
		{"one past the furthest", produce("p5", 2+2*broker.MaxSeqAhead, "d"), 400},
		{"first seq of a new producer too far", produce("p6", broker.MaxSeqAhead+1, "e"), 400},
		{"JSON producer without seq", produceJSON("p7", nil, "f"), 400},
		{"binary producer without seq", func() error {
			resp, err := http.Post("http://"+b.HTTPAddr()+"/produce?topic=t&partition=0&producer_id=p7", brokerapi.MIMEBatch, strings.NewReader(string(brokerapi.AppendBatch(nil, "g"))))
			if err != nil {
				return err
			}
			resp.Body.Close()
			return &brokerclient.Error{Code: resp.StatusCode}
		}, 400},
		{"JSON seq 0", produceJSON("p8", seq(0), "h"), 200},
		{"JSON seq 0 again is a retry", produceJSON("p8", seq(0), "h"), 200},
		{"no producer", produce("", 0, "i"), 200},
		{"no producer again", produce("", 0, "j"), 200},
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
