package scenario

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/quorumq/quorumq/clientlib"
	"github.com/quorumq/quorumq/internal/devtools/testkit"
)

// TestRetentionReclaimsDisk (issue 15 point 3) on real processes: 3 brokers hold a
// topic with retention_ms; 24 MiB produced, then, once retention has passed, every
// replica's data directory takes measurably less disk (at least half of what was
// produced is given back), a read below the new first offset fails with 410 naming
// it, a consumer registered before goes on from the earliest message kept, and
// messages produced afterwards are intact.
func TestRetentionReclaimsDisk(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Consul, PostgreSQL and four quorumq processes")
	}
	c := Start(t, Options{Brokers: 3, Managers: 1, Env: func(id string) []string {
		return []string{"QUORUMQ_RETENTION_INTERVAL=1s"}
	}})
	cl := c.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	if err := c.CreateTopic(ctx, cl, "warmup", 1); err != nil {
		t.Fatal(err)
	}
	// Long enough that nothing is deleted while the messages are produced, on a busy
	// machine too; short enough for the test.
	const retention = 40 * time.Second
	if err := cl.Admin().CreateTopic(ctx, "ret", 1, clientlib.Retention{Time: retention}); err != nil {
		t.Fatal(err)
	}
	info, err := cl.Admin().DescribeTopic(ctx, "ret")
	if err != nil || info.Retention.Time != retention || len(info.Partitions[0].Replicas) != 3 {
		t.Fatalf("describe: %+v %v", info, err)
	}
	consumer, err := cl.NewConsumer(ctx, "ret")
	if err != nil {
		t.Fatal(err)
	}
	producer, err := cl.NewProducer(ctx, "ret")
	if err != nil {
		t.Fatal(err)
	}
	before := map[string]int64{}
	for _, b := range c.Brokers {
		before[b.ID] = testkit.DiskUse(t, b.DataDir)
	}
	const (
		size    = 64 << 10
		batch   = 16
		batches = 24 // 24 MiB
	)
	body := strings.Repeat("r", size)
	records := make([]clientlib.Record, batch)
	for i := range records {
		records[i] = clientlib.Record{Value: body}
	}
	start := time.Now()
	for range batches {
		if _, err := producer.SendBatch(ctx, records); err != nil {
			t.Fatal(err)
		}
	}
	produced := time.Since(start)
	peak := map[string]int64{}
	// Every replica has stored them: its data log's commit may trail the acknowledgement.
	time.Sleep(2 * time.Second)
	for _, b := range c.Brokers {
		peak[b.ID] = testkit.DiskUse(t, b.DataDir)
		t.Logf("%s: %d MiB before, %d MiB after producing %d MiB in %v", b.ID, before[b.ID]>>20, peak[b.ID]>>20, batch*batches*size>>20, produced.Round(time.Millisecond))
	}
	const want = batch * batches * size / 2
	deadline := time.Now().Add(retention + 90*time.Second)
	for _, b := range c.Brokers {
		for {
			now := testkit.DiskUse(t, b.DataDir)
			if peak[b.ID]-now >= want {
				t.Logf("%s: %d MiB after retention (%d MiB given back)", b.ID, now>>20, (peak[b.ID]-now)>>20)
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: disk use %d MiB, %d MiB at the peak: retention gave back less than %d MiB", b.ID, now>>20, peak[b.ID]>>20, want>>20)
			}
			time.Sleep(time.Second)
		}
	}

	// The messages go in the order they came, a second's worth at a time: wait for the
	// last of them.
	for {
		_, _, err = cl.ReadAt(ctx, "ret", 0, 0, 1)
		if !errors.Is(err, clientlib.ErrOffsetGone) {
			t.Fatalf("read at offset 0 after retention: %v, want 410 (offset gone)", err)
		}
		if strings.Contains(err.Error(), fmt.Sprintf("earliest offset is %d", batch*batches)) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("read at offset 0 after retention: %v, want the earliest offset %d", err, batch*batches)
		}
		time.Sleep(time.Second)
	}
	for _, b := range c.Brokers {
		t.Logf("%s: %d MiB with every message produced deleted", b.ID, testkit.DiskUse(t, b.DataDir)>>20)
	}
	for i := range 3 {
		if _, err := producer.Send(ctx, clientlib.Record{Value: fmt.Sprintf("after-%d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	// Reads go round robin over the replicas, and a follower may not have the last yet.
	for {
		msgs, _, err := cl.ReadAt(ctx, "ret", 0, batch*batches, 10)
		if err != nil || len(msgs) > 3 || len(msgs) > 0 && msgs[0].Value != "after-0" {
			t.Fatalf("read of the messages after retention: %+v %v", msgs, err)
		}
		if len(msgs) == 3 && msgs[2].Value == "after-2" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("read of the messages after retention: %+v", msgs)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// The consumer registered before read nothing: it goes on from the earliest kept.
	m, err := consumer.Next(ctx)
	if err != nil || m.Value != "after-0" || m.Offset != batch*batches {
		t.Fatalf("consumer after retention: %+v %v, want after-0 at offset %d", m, err, batch*batches)
	}
}
