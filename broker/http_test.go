package broker_test

import (
	"context"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/quorumq/quorumq/broker"
	"github.com/quorumq/quorumq/broker/brokerapi"
	"github.com/quorumq/quorumq/internal/brokerclient"
)

// startBroker runs one broker in-process with a single-member partition t/0.
func startBroker(t *testing.T) (*broker.Broker, *brokerclient.Client) {
	t.Helper()
	return startBrokerWith(t, broker.Config{ID: "b1", MaxMessageBytes: 100})
}

// startBrokerWith is startBroker with cfg's settings.
func startBrokerWith(t *testing.T, cfg broker.Config) (*broker.Broker, *brokerclient.Client) {
	t.Helper()
	b, self := runBroker(t, cfg)
	cl := brokerclient.New(b.HTTPAddr())
	if err := cl.CreatePartition(context.Background(), "t", 0, []brokerapi.Peer{self}); err != nil {
		t.Fatal(err)
	}
	waitLeader(t, cl, "t", 0)
	return b, cl
}

// runBroker runs a broker in-process on loopback ports, in a temporary data dir, until
// the test ends; cfg gives the ID and any other settings.
func runBroker(t *testing.T, cfg broker.Config) (*broker.Broker, brokerapi.Peer) {
	t.Helper()
	cfg.DataDir = filepath.Join(t.TempDir(), cfg.ID)
	cfg.RaftAddr, cfg.HTTPAddr = "127.0.0.1:0", "127.0.0.1:0"
	b, err := broker.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return b, brokerapi.Peer{ID: cfg.ID, RaftAddr: b.RaftAddr(), HTTPAddr: b.HTTPAddr()}
}

func TestBadInput(t *testing.T) {
	b, cl := startBroker(t)
	big := strings.Repeat("x", 101)
	tests := []struct {
		name, method, path, body string
		code                     int
	}{
		{"garbage JSON", "POST", "/produce", `{"topic":`, 400},
		{"empty topic", "POST", "/produce", `{"topic":"","partition":0,"message":"m"}`, 400},
		{"no partition", "POST", "/produce", `{"topic":"t","message":"m"}`, 400},
		{"negative partition", "POST", "/produce", `{"topic":"t","partition":-1,"message":"m"}`, 400},
		{"no message", "POST", "/produce", `{"topic":"t","partition":0}`, 400},
		{"oversize message", "POST", "/produce", `{"topic":"t","partition":0,"message":"` + big + `"}`, 413},
		{"oversize message in a batch", "POST", "/produce", `{"topic":"t","partition":0,"messages":["ok","` + big + `"]}`, 413},
		{"unknown partition", "POST", "/produce", `{"topic":"t","partition":7,"message":"m"}`, 404},
		{"unknown topic", "POST", "/produce", `{"topic":"nope","partition":0,"message":"m"}`, 404},
		{"consume: unknown consumer", "POST", "/consume", `{"topic":"t","partition":0,"consumer_id":"c"}`, 404},
		{"consume: no consumer id", "POST", "/consume", `{"topic":"t","partition":0}`, 400},
		{"consume: max too big", "POST", "/consume", `{"topic":"t","partition":0,"consumer_id":"c","max":100000}`, 400},
		{"size: no consumer", "GET", "/size?topic=t&partition=0", ``, 400},
		{"size: bad partition", "GET", "/size?topic=t&partition=x&consumer_id=c", ``, 400},
		{"create: no peers", "POST", "/replicas", `{"topic":"u","partition":0}`, 400},
		{"create: garbage", "POST", "/replicas", `[1,2`, 400},
		{"status: unknown", "GET", "/replicas/t/9", ``, 404},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			expectFailure(t, tt.method, "http://"+b.HTTPAddr()+tt.path, "application/json", tt.body, tt.code)
		})
	}
	batch := string(brokerapi.AppendBatch(nil, "m"))
	binaryTests := []struct {
		name, query, body string
		code              int
	}{
		{"binary: no topic", "partition=0", batch, 400},
		{"binary: no partition", "topic=t", batch, 400},
		{"binary: bad partition", "topic=t&partition=x", batch, 400},
		{"binary: bad seq", "topic=t&partition=0&producer_id=p&seq=-1", batch, 400},
		{"binary: no message", "topic=t&partition=0", "", 400},
		{"binary: message cut short", "topic=t&partition=0", batch + "\x05abc", 400},
		{"binary: bad length", "topic=t&partition=0", "\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", 400},
		{"binary: oversize message", "topic=t&partition=0", batch + string(brokerapi.AppendBatch(nil, big)), 413},
		{"binary: unknown partition", "topic=t&partition=7", batch, 404},
	}
	for _, tt := range binaryTests {
		t.Run(tt.name, func(t *testing.T) {
			expectFailure(t, "POST", "http://"+b.HTTPAddr()+"/produce?"+tt.query, brokerapi.MIMEBatch, tt.body, tt.code)
		})
	}
	st, err := cl.Status(context.Background(), b.HTTPAddr(), "t", 0)
	if err != nil || st.Next != 0 || st.Consumers != 0 {
		t.Fatalf("bad requests stored something: %+v %v", st, err)
	}
	// Successes end with a newline too, so that replies printed in a row stay apart.
	for _, path := range []string{"/healthz", "/replicas/t/0"} {
		resp, err := http.Get("http://" + b.HTTPAddr() + path)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.HasSuffix(string(got), "}\n") {
			t.Fatalf("GET %s: %q does not end with a newline", path, got)
		}
	}
}

func expectFailure(t *testing.T, method, url, contentType, body string, code int) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	req.Header.Set("Content-Type", contentType)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != code || !strings.Contains(string(got), `"status":"failure"`) || !strings.Contains(string(got), `"message":"`) ||
		!strings.HasSuffix(string(got), "}\n") {
		t.Fatalf("got %d %q, want %d and a JSON failure ending with a newline", resp.StatusCode, got, code)
	}
	if method != http.MethodGet && !strings.Contains(string(got), `"outcome":"not_applied"`) {
		t.Fatalf("refused %s: %s, want outcome not_applied", method, got)
	}
}

func TestProduceConsumeSingleBroker(t *testing.T) {
	b, cl := startBroker(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := cl.Register(ctx, "t", 0, "c"); err != nil {
		t.Fatal(err)
	}
	r, err := cl.Produce(ctx, "t", 0, "p", 1, []string{"a", "b", "c"})
	if err != nil || r.Offset != 0 || r.Count != 3 {
		t.Fatalf("produce: %+v %v", r, err)
	}
	r, err = cl.Produce(ctx, "t", 0, "p", 1, []string{"a", "b", "c"})
	if err != nil || !r.Duplicate || r.Offset != 0 {
		t.Fatalf("retried produce: %+v %v", r, err)
	}
	if _, err := cl.Produce(ctx, "t", 0, "p", 0, []string{"old"}); err == nil {
		t.Fatal("stale seq accepted")
	}
	// The JSON body is the same request: a retry in it is a duplicate too.
	part := 0
	var jr brokerapi.ProduceReply
	err = cl.Do(ctx, "POST", b.HTTPAddr(), "/produce", brokerapi.ProduceRequest{Topic: "t", Partition: &part,
		ProducerID: "p", Seq: &[]uint64{1}[0], Messages: []string{"a", "b", "c"}}, &jr)
	if err != nil || !jr.Duplicate || jr.Offset != 0 || jr.Count != 3 {
		t.Fatalf("retried produce as JSON: %+v %v", jr, err)
	}
	got, err := cl.Consume(ctx, "t", 0, "c", 0, 2)
	if err != nil || strings.Join(got.Messages, ",") != "a,b" || got.Left != 1 {
		t.Fatalf("consume: %+v %v", got, err)
	}
	again, _ := cl.Consume(ctx, "t", 0, "c", 0, 2) // the reply was "lost": same messages
	if strings.Join(again.Messages, ",") != "a,b" {
		t.Fatalf("retried consume: %+v", again)
	}
	// cl.Consume asks for the binary reply; a client that does not gets the same in JSON.
	var jc struct {
		Offset, Next, Left uint64
		Message            string
		Messages           []string
	}
	err = cl.Do(ctx, "POST", b.HTTPAddr(), "/consume", brokerapi.ConsumeRequest{Topic: "t", Partition: &part,
		ConsumerID: "c", Offset: &[]uint64{0}[0], Max: 2}, &jc)
	if err != nil || jc.Message != "a" || strings.Join(jc.Messages, ",") != "a,b" || jc.Offset != got.Offset ||
		jc.Next != got.Next || jc.Left != got.Left || *got.Message != "a" {
		t.Fatalf("consume as JSON: %+v %v; binary: %+v", jc, err, got)
	}
	var size brokerapi.SizeReply
	if err := cl.Do(ctx, "GET", b.HTTPAddr(), "/size?topic=t&partition=0&consumer_id=c", nil, &size); err != nil || size.Size != 1 {
		t.Fatalf("size: %+v %v", size, err)
	}
	rest, _ := cl.Consume(ctx, "t", 0, "c", 2, 10)
	empty, err := cl.Consume(ctx, "t", 0, "c", 3, 10)
	if strings.Join(rest.Messages, ",") != "c" || err != nil || len(empty.Messages) != 0 {
		t.Fatalf("rest %+v, then %+v %v", rest, empty, err)
	}
	jr = brokerapi.ProduceReply{}
	err = cl.Do(ctx, "POST", b.HTTPAddr(), "/produce", brokerapi.ProduceRequest{Topic: "t", Partition: &part,
		ProducerID: "p", Seq: &[]uint64{2}[0], Message: &[]string{"d"}[0]}, &jr)
	if err != nil || jr.Duplicate || jr.Offset != 3 || jr.Count != 1 {
		t.Fatalf("produce as JSON: %+v %v", jr, err)
	}
	if last, err := cl.Consume(ctx, "t", 0, "c", 3, 10); err != nil || strings.Join(last.Messages, ",") != "d" {
		t.Fatalf("consume after a JSON produce: %+v %v", last, err)
	}
}
