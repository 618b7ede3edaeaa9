package nemesis

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// The suite's flags: `make nemesis NEMESIS_FLAGS='--duration 10m --faults partition,kill,pause'`
// passes them through `go test -args`. The defaults are the short seeded run of `make test`.
var (
	flagDuration  = flag.Duration("duration", 2*time.Minute, "how long clients run under faults (longer, by up to half, until every kind reached --min-faults)")
	flagFaults    = flag.String("faults", strings.Join(DefaultKinds, ","), "fault kinds to inject, of "+strings.Join(Kinds, ","))
	flagSeed      = flag.Uint64("seed", 1, "seed of the fault schedule and of the clients")
	flagWorkloads = flag.String("workloads", "queue,bank", "what runs under faults: queue, bank")
	flagMinFaults = flag.Int("min-faults", 30, "fail unless at least this many faults of each kind were injected")
	flagRound     = flag.Duration("round", 40*time.Second, "length of one bank round (each round is checked on its own)")
	flagHistory   = flag.String("history", "", "file a failing history is saved to (default: one in the temp dir)")
	flagReplay    = flag.String("replay", "", "check a saved history instead of running")
)

// porcupineTimeout bounds the linearizability search of one bank round.
const porcupineTimeout = 3 * time.Minute

// TestNemesis runs the queue and the bank on real processes under faults and checks
// what their clients saw.
func TestNemesis(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes for minutes")
	}
	if *flagReplay != "" {
		h, err := Load(*flagReplay)
		if err != nil {
			t.Fatal(err)
		}
		if !verdict(t, h, nil, nil) {
			t.Fatalf("%s: violations found", *flagReplay)
		}
		return
	}
	kinds := strings.Split(*flagFaults, ",")
	for _, k := range kinds {
		if !slices.Contains(Kinds, k) {
			t.Fatalf("--faults: unknown kind %q (known: %s)", k, strings.Join(Kinds, ","))
		}
	}
	workloads := strings.Split(*flagWorkloads, ",")
	dir := t.TempDir()
	say := func(s string) { fmt.Println(s) }
	h := &History{Seed: int64(*flagSeed)}
	var nemeses []*Nemesis
	var run []func(ctx context.Context)

	if slices.Contains(workloads, "queue") {
		q, domains := StartQueue(t, dir, 3)
		n := New(*flagSeed, kinds, domains, say)
		nemeses = append(nemeses, n)
		run = append(run, func(ctx context.Context) { runQueue(t, ctx, q, n, h) })
	}
	if slices.Contains(workloads, "bank") {
		b, d := StartBank(t, dir)
		n := New(*flagSeed+1, kinds, []*Domain{d}, say)
		nemeses = append(nemeses, n)
		run = append(run, func(ctx context.Context) { runBank(t, ctx, b, n, h) })
	}
	if len(run) == 0 {
		t.Fatalf("--workloads %q names neither queue nor bank", *flagWorkloads)
	}
	say(fmt.Sprintf("nemesis: seed %d, %v of %s, workloads %s", *flagSeed, *flagDuration, *flagFaults, *flagWorkloads))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go stopAfter(cancel, nemeses, kinds)
	var wg sync.WaitGroup
	for _, r := range run {
		wg.Go(func() { r(ctx) })
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	for _, n := range nemeses {
		h.Faults = append(h.Faults, n.Log()...)
	}
	counts := total(nemeses)
	if !verdict(t, h, counts, kinds) {
		path := *flagHistory
		if path == "" {
			path = filepath.Join(os.TempDir(), fmt.Sprintf("quorumq-nemesis-%d-%s.json", *flagSeed, time.Now().UTC().Format("20060102T150405")))
		}
		if err := h.Save(path); err != nil {
			t.Errorf("save history: %v", err)
		}
		t.Fatalf("violations found; history saved to %s (replay: go test ./cmd/quorumq/nemesis -run 'TestNemesis$' -args --replay %s)", path, path)
	}
}

// stopAfter ends the run once --duration has passed and every kind has been injected
// --min-faults times, or at the latest half a duration later.
func stopAfter(stop func(), nemeses []*Nemesis, kinds []string) {
	time.Sleep(*flagDuration)
	deadline := time.Now().Add(*flagDuration / 2)
	for time.Now().Before(deadline) && slices.ContainsFunc(kinds, func(k string) bool { return total(nemeses)[k] < *flagMinFaults }) {
		time.Sleep(200 * time.Millisecond)
	}
	stop()
}

func total(nemeses []*Nemesis) map[string]int {
	counts := map[string]int{}
	for _, n := range nemeses {
		for k, v := range n.Counts() {
			counts[k] += v
		}
	}
	return counts
}

// runQueue produces and consumes under faults until ctx ends, then heals, drains and
// records the queue's history in h.
func runQueue(t *testing.T, ctx context.Context, q *Queue, n *Nemesis, h *History) {
	var wg sync.WaitGroup
	wg.Go(func() { n.Run(ctx) })
	for id := range 3 {
		wg.Go(func() { q.Produce(ctx, id) })
	}
	c, err := q.NewConsumer(ctx, 0)
	var sc *Consumer
	if err == nil {
		sc, err = q.NewSeqConsumer(ctx)
	}
	if err != nil {
		t.Error(err)
		wg.Wait()
		return
	}
	wg.Go(func() { c.Consume(ctx) })
	wg.Go(func() { sc.Consume(ctx) })
	wg.Wait()
	qh, err := q.Finish(context.Background(), []*Consumer{c, sc})
	if err != nil {
		t.Errorf("queue: read the partitions after the faults: %v", err)
		return
	}
	h.Queue = qh
}

// runBank moves money under faults in rounds until ctx ends; each round ends quiet,
// with the books of every ATM, and the next starts from them.
func runBank(t *testing.T, ctx context.Context, b *Bank, n *Nemesis, h *History) {
	go n.Run(ctx)
	var start []int64
	n.Quiet(func() {
		books, err := b.Books(context.Background())
		if err != nil {
			t.Errorf("bank: %v", err)
			return
		}
		start = books[0]
	})
	for round := 0; start != nil && ctx.Err() == nil; round++ {
		rctx, cancel := context.WithTimeout(ctx, *flagRound)
		ops := b.Round(rctx, *flagSeed, round, 4)
		cancel()
		var end [][]int64
		n.Quiet(func() {
			// An unanswered request may still be in an ATM's hands: let it land
			// before the books close the round.
			time.Sleep(2 * time.Second)
			var err error
			if end, err = b.Books(context.Background()); err != nil {
				t.Errorf("bank: end of round %d: %v", round, err)
			}
		})
		if end == nil {
			return
		}
		h.Bank = append(h.Bank, BankRound{Start: start, Ops: ops, End: end})
		start = end[0]
	}
}

// verdict checks h and the fault counts of kinds, prints the verdict line and returns
// whether it passed.
func verdict(t *testing.T, h *History, counts map[string]int, kinds []string) bool {
	var q QueueResult
	if h.Queue != nil {
		q = CheckQueue(h.Queue)
	}
	b := CheckBank(h.Bank, porcupineTimeout)
	for _, p := range append(q.Problems, b.Problems...) {
		fmt.Println("nemesis: violation:", p)
	}
	ok := q.OK() && b.OK()
	if h.Queue != nil && q.Acked == 0 {
		fmt.Println("nemesis: violation: no record was acknowledged: the queue made no progress")
		ok = false
	}
	for _, k := range kinds {
		if counts[k] < *flagMinFaults {
			fmt.Printf("nemesis: violation: only %d faults of kind %s, want at least %d (--min-faults)\n", counts[k], k, *flagMinFaults)
			ok = false
		}
	}
	total := 0
	var perKind []string
	for _, k := range Kinds {
		if c, ran := counts[k]; ran {
			total += c
			perKind = append(perKind, fmt.Sprintf("%s=%d", k, c))
		}
	}
	if counts == nil {
		total = len(h.Faults)
	}
	word := "PASS"
	if !ok {
		word = "FAIL"
	}
	line := fmt.Sprintf("nemesis: %s faults=%d (%s) lost=%d duplicated=%d reordered=%d invented=%d nonlinearizable=%d undecided=%d not_conserved=%d negative=%d | queue: acked=%d unknown=%d stored=%d delivered=%d | bank: rounds=%d ops=%d retried=%d unknown=%d refused=%d",
		word, total, strings.Join(perKind, " "), q.Lost, q.Duplicated, q.Reordered, q.Invented,
		b.Nonlinearizable, b.Undecided, b.NotConserved, b.Negative,
		q.Acked, q.Unknown, q.Stored, q.Delivered, b.Rounds, b.Ops, b.Retried, b.Unknown, b.Refused)
	fmt.Println(line)
	t.Log(line)
	return ok
}
