package clientlib_test

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/quorumq/quorumq/clientlib"
	"github.com/quorumq/quorumq/cmd/quorumq/proctest"
	"github.com/quorumq/quorumq/cmd/quorumq/scenario"
)

// TestProduceConsumeThroughFailovers runs the SDK against a real cluster: a producer
// and a consumer work on while the write manager and a partition's leader broker are
// SIGKILLed and restarted. Every acknowledged message must be consumed exactly once,
// in order within its partition.
func TestProduceConsumeThroughFailovers(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Consul, PostgreSQL and six quorumq processes")
	}
	cl := scenario.Start(t, scenario.Options{Brokers: 3, Managers: 3})
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	c := cl.Client(t)

	const topic, parts = "orders", 3
	// The managers place partitions only once they know the brokers: CreateTopic retries until then.
	if err := cl.CreateTopic(ctx, c, topic, parts); err != nil {
		t.Fatal(err)
	}
	p, err := c.NewProducer(ctx, topic, clientlib.WithBatchSize(100))
	if err != nil {
		t.Fatal(err)
	}
	cs, err := c.NewConsumer(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}

	// The consumer reads all the while, recording what each partition hands out.
	const total = 3000 + 1 // the last one from a second producer
	var (
		mu       sync.Mutex
		consumed = map[int][]clientlib.Message{}
		count    int
	)
	consumerDone := make(chan error, 1)
	go func() {
		for {
			msgs, err := cs.Poll(ctx, 200)
			if err != nil {
				consumerDone <- err
				return
			}
			mu.Lock()
			for _, m := range msgs {
				consumed[m.Partition] = append(consumed[m.Partition], m)
			}
			count += len(msgs)
			n := count
			mu.Unlock()
			if n >= total {
				consumerDone <- nil
				return
			}
			if len(msgs) == 0 {
				time.Sleep(20 * time.Millisecond)
			}
		}
	}()

	next := 0
	send := func(n int) {
		t.Helper()
		for range n {
			if err := p.SendAsync(ctx, clientlib.Record{Value: fmt.Sprintf("%06d", next)}); err != nil {
				t.Fatal(err)
			}
			next++
		}
	}
	flush := func(what string) {
		t.Helper()
		start := time.Now()
		if err := p.Flush(ctx); err != nil {
			t.Fatalf("%s: flush: %v", what, err)
		}
		t.Logf("%s: %d messages acknowledged (flush took %v)", what, next, time.Since(start).Round(time.Millisecond))
	}

	send(total / 3)
	flush("calm")

	wm, err := cl.WriteManager(ctx)
	if err != nil {
		t.Fatal(err)
	}
	send(total / 6)
	wm.Kill()
	// A metadata write needs a new write manager: registering waits for the election.
	start := time.Now()
	p2, err := c.NewProducer(ctx, topic, clientlib.ToPartition(1))
	if err != nil {
		t.Fatalf("register a producer after the write manager died: %v", err)
	}
	t.Logf("write manager %s SIGKILLed: producer registered %v later", wm.ID, time.Since(start).Round(time.Millisecond))
	send(total / 6)
	flush("write manager " + wm.ID + " SIGKILLed")
	wm.Restart(t)

	info := fullyReplicated(ctx, t, c, topic, 3)
	victim := cl.Broker(info.Partitions[0].Leader)
	if victim == nil {
		t.Fatalf("partition 0 has no known leader: %+v", info)
	}
	send(total / 6)
	victim.Kill()
	send(total - 1 - next)
	flush("partition 0 leader " + victim.ID + " SIGKILLed")
	victim.Restart(t)
	if err := p.Close(ctx); err != nil {
		t.Fatal(err)
	}
	// The second producer's message counts as one more on partition 1.
	if _, err := p2.Send(ctx, clientlib.Record{Value: fmt.Sprintf("%06d", next)}); err != nil {
		t.Fatal(err)
	}
	next++

	select {
	case err := <-consumerDone:
		if err != nil {
			t.Fatalf("consumer: %v", err)
		}
	case <-ctx.Done():
		mu.Lock()
		t.Fatalf("consumed only %d of %d messages", count, total)
	}
	mu.Lock()
	defer mu.Unlock()
	seen := map[string]bool{}
	for part, msgs := range consumed {
		for i, m := range msgs {
			if m.Offset != int64(i) {
				t.Fatalf("partition %d: message %d has offset %d: skipped or repeated offsets", part, i, m.Offset)
			}
			if i > 0 && m.Value <= msgs[i-1].Value {
				t.Fatalf("partition %d: %s after %s: out of order or duplicated", part, m.Value, msgs[i-1].Value)
			}
			if seen[m.Value] {
				t.Fatalf("%s consumed twice", m.Value)
			}
			seen[m.Value] = true
		}
	}
	var missing []string
	for i := range total {
		if v := fmt.Sprintf("%06d", i); !seen[v] {
			missing = append(missing, v)
		}
	}
	if len(missing) > 0 || len(seen) != total {
		slices.Sort(missing)
		t.Fatalf("%d distinct messages consumed, want %d; missing %v", len(seen), total, missing[:min(len(missing), 20)])
	}
	if msgs, err := cs.Poll(ctx, 10); err != nil || len(msgs) != 0 {
		t.Fatalf("after everything: Poll = %d messages, %v; want none", len(msgs), err)
	}
	if size, err := cs.Size(ctx); err != nil || size != 0 {
		t.Fatalf("Size = %d, %v; want 0", size, err)
	}
	t.Logf("%d messages over %d partitions: each consumed once, in order", total, len(consumed))

	t.Run("batch-keys-resume", func(t *testing.T) { testBatchKeysResume(ctx, t, c) })
	t.Run("cli", func(t *testing.T) { testCLI(t, cl) })
	t.Run("direct-without-managers", func(t *testing.T) { testDirectWithoutManagers(ctx, t, cl, c) })
}

// testDirectWithoutManagers: a producer that has the topic's metadata keeps producing
// with every manager SIGKILLed, which only the direct path to the partition leaders
// can do; once the managers are back, a consumer reads each message once.
func testDirectWithoutManagers(ctx context.Context, t *testing.T, cl *scenario.Cluster, c *clientlib.Client) {
	const topic = "direct"
	if err := cl.CreateTopic(ctx, c, topic, 3); err != nil {
		t.Fatal(err)
	}
	p, err := c.NewProducer(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	batch := func(what string) {
		t.Helper()
		var recs []clientlib.Record
		for range 30 {
			v := fmt.Sprintf("d%03d", len(want))
			want = append(want, v)
			recs = append(recs, clientlib.Record{Value: v})
		}
		bctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		if _, err := p.SendBatch(bctx, recs); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	batch("managers up")
	for _, m := range cl.Managers {
		m.Kill()
	}
	batch("every manager SIGKILLed")
	batch("every manager SIGKILLed, again")
	for _, m := range cl.Managers {
		m.Restart(t)
	}
	if err := p.Close(ctx); err != nil {
		t.Fatal(err)
	}
	cs, err := c.NewConsumer(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for len(got) < len(want) {
		msgs, err := cs.Poll(ctx, 100)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range msgs {
			got = append(got, m.Value)
		}
		if len(msgs) == 0 {
			time.Sleep(20 * time.Millisecond)
		}
	}
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Fatalf("consumed %v, want %v", got, want)
	}
	if msgs, err := cs.Poll(ctx, 10); err != nil || len(msgs) != 0 {
		t.Fatalf("after all: Poll = %d messages, %v; want none", len(msgs), err)
	}
}

// fullyReplicated waits until every partition of topic has rf replicas. A topic created
// while fewer brokers were known starts with fewer, and the managers add the others in
// their health passes; killing a broker before that may leave a partition with one of
// two replicas, which no Raft group can serve until the broker is back.
func fullyReplicated(ctx context.Context, t *testing.T, c *clientlib.Client, topic string, rf int) clientlib.TopicInfo {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	for {
		info, err := c.Admin().DescribeTopic(ctx, topic)
		if err == nil && !slices.ContainsFunc(info.Partitions, func(p clientlib.PartitionInfo) bool { return len(p.Replicas) < rf }) {
			return info
		}
		select {
		case <-ctx.Done():
			t.Fatalf("topic %s not fully replicated: %+v, %v", topic, info, err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// testBatchKeysResume: SendBatch keeps each key on one partition in order, and a
// consumer resumed by id continues where the first one stopped.
func testBatchKeysResume(ctx context.Context, t *testing.T, c *clientlib.Client) {
	if err := c.Admin().CreateTopic(ctx, "keys", 2); err != nil {
		t.Fatal(err)
	}
	p, err := c.NewProducer(ctx, "keys")
	if err != nil {
		t.Fatal(err)
	}
	var recs []clientlib.Record
	for i := range 50 {
		recs = append(recs, clientlib.Record{Key: fmt.Sprint("k", i%5), Value: fmt.Sprintf("k%d-%02d", i%5, i)})
	}
	pos, err := p.SendBatch(ctx, recs)
	if err != nil {
		t.Fatal(err)
	}
	where := map[string]clientlib.Position{} // value → position
	for i, r := range recs {
		where[r.Value] = pos[i]
	}
	first, err := c.NewConsumer(ctx, "keys")
	if err != nil {
		t.Fatal(err)
	}
	got, err := first.Poll(ctx, 10)
	if err != nil || len(got) != 10 {
		t.Fatalf("first Poll: %d messages, %v", len(got), err)
	}
	resumed, err := c.NewConsumer(ctx, "keys", clientlib.WithConsumerID(first.ID()))
	if err != nil {
		t.Fatal(err)
	}
	for {
		msgs, err := resumed.Poll(ctx, 7)
		if err != nil {
			t.Fatal(err)
		}
		if len(msgs) == 0 {
			break
		}
		got = append(got, msgs...)
	}
	if len(got) != len(recs) {
		t.Fatalf("first and resumed consumer read %d messages together, want %d", len(got), len(recs))
	}
	last := map[string]string{} // key → last value
	for _, m := range got {
		w, ok := where[m.Value]
		if !ok || w.Partition != m.Partition || w.Offset != m.Offset {
			t.Fatalf("%s read at %d/%d, SendBatch said %+v", m.Value, m.Partition, m.Offset, w)
		}
		k := m.Value[:2]
		if m.Value <= last[k] {
			t.Fatalf("%s after %s", m.Value, last[k])
		}
		last[k] = m.Value
	}
}

// runCLI runs `quorumq args...` against the cluster to its end and returns its output.
func runCLI(t *testing.T, cl *scenario.Cluster, stdin string, args ...string) string {
	t.Helper()
	p := proctest.Start(t, args[0], append(args, cl.ConsulFlags()...)...)
	if _, err := io.WriteString(p.Stdin, stdin); err != nil {
		t.Fatal(err)
	}
	p.Stdin.Close()
	if err := p.Wait(); err != nil {
		t.Fatalf("quorumq %s: %v\n%s", strings.Join(args, " "), err, p.Output())
	}
	return p.Output()
}

// testCLI drives the topic, produce and consume commands through Consul discovery.
func testCLI(t *testing.T, cl *scenario.Cluster) {
	want := func(out, sub string) {
		t.Helper()
		if !strings.Contains(out, sub) {
			t.Fatalf("output lacks %q:\n%s", sub, out)
		}
	}
	want(runCLI(t, cl, "", "topic", "create", "cli", "--partitions", "2"), "created topic cli")
	want(runCLI(t, cl, "", "topic", "list"), "cli\n")
	want(runCLI(t, cl, "", "topic", "describe", "cli"), "topic cli, 2 partitions")
	want(runCLI(t, cl, "", "produce", "--topic", "cli", "--count", "300", "--size", "32"), "sent 300 messages")
	want(runCLI(t, cl, "first line\nsecond line\n", "produce", "--topic", "cli", "--partition", "1"), "sent 2 messages")
	out := runCLI(t, cl, "", "consume", "--topic", "cli", "--offsets")
	lines := 0
	for _, l := range strings.Split(out, "\n") {
		if strings.Count(l, "\t") == 2 {
			lines++
		}
	}
	if lines != 302 {
		t.Fatalf("consume printed %d messages, want 302:\n%s", lines, out)
	}
	want(out, "1\t")
	want(out, "\tsecond line\n")
	// A new consumer with --count stops there; without --follow an empty topic ends it.
	out = runCLI(t, cl, "", "consume", "--topic", "cli", "--count", "5", "--partition", "1")
	if n := strings.Count(out, "\n"); n != 6 { // five messages and the consumer line
		t.Fatalf("consume --count 5 printed %d lines:\n%s", n, out)
	}
}
