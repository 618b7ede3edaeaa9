package scenario

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quorumq/quorumq/clientlib"
	"github.com/quorumq/quorumq/cmd/quorumq/proctest"
	"github.com/quorumq/quorumq/discovery"
)

const (
	topic      = "scenario"
	partitions = 4
	// perProducer and produceFor bound the run: 3 producers × 1,000 messages over at
	// least 20s keeps the test under a minute on 2 cores, with time for both crashes,
	// the restarts, and traffic after them.
	perProducer = 1000
	produceFor  = 20 * time.Second
)

// TestSeedScenario is the seed's scenario on real processes: 5 brokers, 3 managers
// (1 write + 2 read), 3 producers and 2 consumers each writing a log of what it sent
// or received. Mid-run the leader broker of a partition and the write manager are
// SIGKILLed, then both restarted. Each consumer has its own offsets, so each must
// receive every acknowledged message exactly once, in per-partition order.
func TestSeedScenario(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Consul, PostgreSQL and eight quorumq processes")
	}
	began := time.Now()
	elapsed := func() time.Duration { return time.Since(began).Round(100 * time.Millisecond) }
	logDir := keptOnFailure(t)
	c := Start(t, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	if err := c.CreateTopic(ctx, c.Client(t), topic, partitions); err != nil {
		t.Fatal(err)
	}
	t.Logf("%v: cluster up, topic %s with %d partitions created", elapsed(), topic, partitions)

	var acked atomic.Int64
	producers := []struct {
		name string
		send sender
	}{
		{"p1", oneByOne},
		{"p2", batches(20)},
		{"p3", async(50)},
	}
	var prodWG, consWG sync.WaitGroup
	// A failing test returns early: stop the clients before their t.Logf outlives it
	// (this runs before the processes are killed: cleanups run last-in, first-out).
	t.Cleanup(func() { cancel(); prodWG.Wait(); consWG.Wait() })
	prodErrs := make(chan error, 2*len(producers)) // a send error and a close error each
	for _, p := range producers {
		cl := c.Client(t)
		pr, err := cl.NewProducer(ctx, topic)
		if err != nil {
			t.Fatal(err)
		}
		lg := createLog(t, logDir, p.name+".log")
		values := make([]string, perProducer)
		for i := range values {
			values[i] = fmt.Sprintf("%s-%05d", p.name, i)
		}
		prodWG.Go(func() {
			if err := p.send.run(ctx, pr, values, &outcomes{t: t, name: p.name, log: lg, acked: &acked}); err != nil {
				prodErrs <- fmt.Errorf("producer %s: %w", p.name, err)
			}
			if err := pr.Close(ctx); err != nil {
				prodErrs <- fmt.Errorf("producer %s: close: %w", p.name, err)
			}
		})
	}
	producersDone := make(chan struct{})
	go func() { prodWG.Wait(); close(producersDone) }()

	// The consumers learn the acknowledged set once the producers are done, so that they
	// can stop when they have all of it (or the cluster says there is nothing more).
	var ackedSet map[string]bool
	ackedKnown := make(chan struct{})
	consumers := []string{"c1", "c2"}
	consErrs := make(chan error, len(consumers))
	consumerOf := map[string]*clientlib.Consumer{}
	for _, name := range consumers {
		cs, err := c.Client(t).NewConsumer(ctx, topic)
		if err != nil {
			t.Fatal(err)
		}
		consumerOf[name] = cs
		lg := createLog(t, logDir, name+".log")
		consWG.Go(func() {
			if err := consume(ctx, t, cs, lg, ackedKnown, func() map[string]bool { return ackedSet }); err != nil {
				consErrs <- fmt.Errorf("consumer %s: %w", name, err)
			}
		})
	}

	// The crashes, timed by progress so that they land mid-run however fast the box is.
	total := int64(len(producers) * perProducer)
	reach := func(frac float64) bool {
		for acked.Load() < int64(frac*float64(total)) {
			select {
			case <-producersDone:
				return false
			case <-time.After(20 * time.Millisecond):
			}
		}
		return true
	}
	if reach(0.25) {
		info, err := c.Client(t).Admin().DescribeTopic(ctx, topic)
		if err != nil {
			t.Fatal(err)
		}
		p0 := info.Partitions[0]
		broker := c.Broker(p0.Leader)
		if broker == nil && len(p0.Replicas) > 0 { // leader not known right now: any replica will do
			broker = c.Broker(p0.Replicas[0])
		}
		if broker == nil {
			t.Fatalf("partition 0 names no known broker: %+v", p0)
		}
		broker.Kill()
		t.Logf("%v: %d acknowledged; SIGKILLed broker %s (partition 0: leader %q, replicas %v)",
			elapsed(), acked.Load(), broker.ID, p0.Leader, p0.Replicas)
		if reach(0.45) {
			wm, err := c.WriteManager(ctx)
			if err != nil {
				t.Fatal(err)
			}
			wm.Kill()
			killed := time.Now()
			t.Logf("%v: %d acknowledged; SIGKILLed write manager %s", elapsed(), acked.Load(), wm.ID)
			// Past the managers' broker grace (2s), so the dead broker's replicas move
			// before it returns.
			reach(0.65)
			select {
			case <-time.After(time.Until(killed.Add(5 * time.Second))):
			case <-producersDone:
			}
			broker.Restart(t)
			wm.Restart(t)
			t.Logf("%v: %d acknowledged; restarted %s and %s", elapsed(), acked.Load(), broker.ID, wm.ID)
		}
	}
	<-producersDone
	close(prodErrs)
	for err := range prodErrs {
		t.Error(err)
	}
	sent := map[string][]Sent{}
	ackedSet = map[string]bool{}
	for _, p := range producers {
		s, err := ReadProducerLog(filepath.Join(logDir, p.name+".log"))
		if err != nil {
			t.Fatal(err)
		}
		sent[p.name] = s
		for _, m := range s {
			if m.Acked {
				ackedSet[m.Value] = true
			}
		}
	}
	close(ackedKnown)
	t.Logf("%v: producers done: %d of %d acknowledged", elapsed(), len(ackedSet), total)
	if len(ackedSet) == 0 {
		t.Fatal("no message was acknowledged")
	}

	consWG.Wait()
	t.Logf("%v: consumers done", elapsed())
	close(consErrs)
	for err := range consErrs {
		t.Error(err)
	}
	for _, name := range consumers {
		got, err := ReadConsumerLog(filepath.Join(logDir, name+".log"))
		if err != nil {
			t.Fatal(err)
		}
		r, err := Check(name, sent, got)
		if err != nil {
			t.Fatal(err)
		}
		if !r.OK() {
			t.Error(r)
			continue
		}
		if size, err := consumerOf[name].Size(ctx); err != nil || size != 0 {
			t.Errorf("consumer %s: Size = %d, %v after reading everything; want 0", name, size, err)
		}
		t.Logf("consumer %s: all %d acknowledged messages exactly once, in order (%d received)", name, r.Acked, r.Received)
	}
	waitAllHealthy(ctx, t, c)
	checkDashboard(t, c)
	t.Logf("%v: scenario done", elapsed())
	t.Run("bench-cluster", func(t *testing.T) { testBenchCluster(t, c) })
	t.Run("bench-topics", func(t *testing.T) { testBenchTopics(t, c) })
}

// testBenchTopics runs `quorumq bench topics` against the cluster the scenario leaves.
func testBenchTopics(t *testing.T, c *Cluster) {
	p := proctest.Start(t, "bench-topics", append([]string{"bench", "topics", "--topics", "20", "--partitions", "2",
		"--clients", "2", "--prefix", "bt-", "--lists", "3"}, c.ConsulFlags()...)...)
	if err := p.Wait(); err != nil {
		t.Fatalf("quorumq bench topics: %v\n%s", err, p.Output())
	}
	out := p.Output()
	for _, want := range []string{"bench topics: 20 topics × 2 partitions, 2 clients", "create: 20 created, 0 failed",
		"create latency: p50", "  topics 0-1: p50", "  topics 18-19: p50", "GET /topics: ", "GET /topics latency: p50"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	t.Logf("quorumq bench topics:\n%s", out)
}

// testBenchCluster runs `quorumq bench cluster` against the cluster the scenario leaves.
func testBenchCluster(t *testing.T, c *Cluster) {
	p := proctest.Start(t, "bench", append([]string{"bench", "cluster", "--topic", "bench",
		"--partitions", "2", "--producers", "4", "--batch", "10", "--size", "256", "--duration", "3s"}, c.ConsulFlags()...)...)
	if err := p.Wait(); err != nil {
		t.Fatalf("quorumq bench cluster: %v\n%s", err, p.Output())
	}
	out := p.Output()
	for _, want := range []string{"4 producers, 256-byte messages, 10 per request, topic bench (2 partitions)",
		"messages acknowledged", "msgs/s", "ack latency per request: p50"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	t.Logf("quorumq bench cluster:\n%s", out)
}

// sender is how a producer hands its messages to the SDK: chunk at a time.
type sender struct {
	chunk int
	send  func(ctx context.Context, pr *clientlib.Producer, values []string) ([]clientlib.Position, error)
}

// oneByOne waits for each message's acknowledgement before the next.
var oneByOne = sender{chunk: 1, send: func(ctx context.Context, pr *clientlib.Producer, values []string) ([]clientlib.Position, error) {
	pos, err := pr.Send(ctx, clientlib.Record{Value: values[0]})
	return []clientlib.Position{pos}, err
}}

// batches sends n messages per call (SendBatch splits them by partition).
func batches(n int) sender {
	return sender{chunk: n, send: func(ctx context.Context, pr *clientlib.Producer, values []string) ([]clientlib.Position, error) {
		recs := make([]clientlib.Record, len(values))
		for i, v := range values {
			recs[i] = clientlib.Record{Value: v}
		}
		return pr.SendBatch(ctx, recs)
	}}
}

// async queues n messages and flushes: a flush acknowledges everything queued since
// the previous one (positions unknown), a failed flush none of it.
func async(n int) sender {
	return sender{chunk: n, send: func(ctx context.Context, pr *clientlib.Producer, values []string) ([]clientlib.Position, error) {
		pos := make([]clientlib.Position, len(values))
		for i, v := range values {
			if err := pr.SendAsync(ctx, clientlib.Record{Value: v}); err != nil {
				return nil, err
			}
			pos[i] = clientlib.Position{Partition: -1, Offset: -1}
		}
		return pos, pr.Flush(ctx)
	}}
}

// run sends every value, no faster than over produceFor, so that the crashes and
// restarts fall inside the run however fast the machine is; a slow cluster just takes
// longer. A failed send is logged unconfirmed and the producer goes on, as a real one
// would; only the test's deadline ends it early.
func (s sender) run(ctx context.Context, pr *clientlib.Producer, values []string, out *outcomes) error {
	began := time.Now()
	for done := 0; done < len(values); {
		due := began.Add(produceFor * time.Duration(done) / time.Duration(len(values)))
		select {
		case <-time.After(time.Until(due)):
		case <-ctx.Done():
			return ctx.Err()
		}
		chunk := values[done:min(done+s.chunk, len(values))]
		done += len(chunk)
		pos, err := s.send(ctx, pr, chunk)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err := out.record(chunk, pos, err); err != nil {
			return err
		}
	}
	return nil
}

// outcomes logs what became of a producer's sends and counts the acknowledgements.
type outcomes struct {
	t        *testing.T
	name     string
	log      *Log
	acked    *atomic.Int64
	failures int
}

// shownFailures bounds the errors shown per client; a producer's log has every
// unconfirmed message.
const shownFailures = 3

func (o *outcomes) record(values []string, pos []clientlib.Position, sendErr error) error {
	if sendErr != nil {
		if o.failures++; o.failures <= shownFailures {
			o.t.Logf("producer %s: %d messages unconfirmed: %v", o.name, len(values), sendErr)
		}
		return o.log.Unconfirmed(values)
	}
	parts, offs := make([]int, len(pos)), make([]int64, len(pos))
	for i, p := range pos {
		parts[i], offs[i] = p.Partition, p.Offset
	}
	if err := o.log.Acked(values, parts, offs); err != nil {
		return err
	}
	o.acked.Add(int64(len(values)))
	return nil
}

// consume polls until the producers are done and either every acknowledged value has
// arrived and a poll comes back empty, or a poll comes back empty 30s after the
// producers finished (then the check reports what is missing). Errors are retried: the
// consumer names its offsets in every request, so a retry never skips.
func consume(ctx context.Context, t *testing.T, cs *clientlib.Consumer, lg *Log, ackedKnown <-chan struct{}, acked func() map[string]bool) error {
	received := map[string]bool{}
	var giveUp time.Time
	failures := 0
	for {
		msgs, err := cs.Poll(ctx, 100)
		if err != nil {
			if ctx.Err() != nil {
				return err
			}
			if failures++; failures <= shownFailures {
				t.Logf("consumer %s: poll: %v (retrying)", cs.ID(), err)
			}
			time.Sleep(200 * time.Millisecond)
			continue
		}
		rs := make([]Received, len(msgs))
		for i, m := range msgs {
			rs[i] = Received{Partition: m.Partition, Offset: m.Offset, Value: m.Value}
			received[m.Value] = true
		}
		if err := lg.Received(rs); err != nil {
			return err
		}
		if len(msgs) > 0 {
			continue
		}
		select {
		case <-ackedKnown:
			if giveUp.IsZero() {
				giveUp = time.Now().Add(30 * time.Second)
			}
			if hasAll(received, acked()) || time.Now().After(giveUp) {
				return nil
			}
		default:
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func hasAll(got, want map[string]bool) bool {
	for v := range want {
		if !got[v] {
			return false
		}
	}
	return true
}

// waitAllHealthy checks that the restarted broker and manager came back: every process
// passes its Consul health check again.
func waitAllHealthy(ctx context.Context, t *testing.T, c *Cluster) {
	t.Helper()
	want := map[string]int{discovery.ServiceBroker: len(c.Brokers), discovery.ServiceManager: len(c.Managers)}
	deadline := time.Now().Add(time.Minute)
	for svc, n := range want {
		for {
			ins, err := c.Discovery.Healthy(ctx, svc)
			if err == nil && len(ins) == n {
				break
			}
			if time.Now().After(deadline) {
				t.Errorf("%s: %d healthy in Consul a minute after the restarts, want %d (%v)", svc, len(ins), n, err)
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
}

// keptOnFailure is a directory for the clients' logs: removed after a passing test,
// kept (and named in the output) after a failing one.
func keptOnFailure(t *testing.T) string {
	dir, err := os.MkdirTemp("", "quorumq-scenario-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("client logs kept in %s", dir)
			return
		}
		os.RemoveAll(dir)
	})
	return dir
}

func createLog(t *testing.T, dir, name string) *Log {
	lg, err := CreateLog(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lg.Close() })
	return lg
}
