// Package brokerbench measures brokers: produce and consume throughput and ack latency
// on partitions with RF 3, and the cost of many idle partitions. It starts three
// brokers of the quorumq binary (or uses running ones) and talks to them over HTTP.
package brokerbench

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quorumq/quorumq/broker/brokerapi"
	"github.com/quorumq/quorumq/internal/brokerclient"
)

// Config describes a run.
type Config struct {
	Binary     string        // quorumq binary that starts brokers when Brokers is empty
	Brokers    []string      // HTTP addresses of running brokers (at least 3)
	Partitions int           // partitions to create, RF 3
	Clients    int           // concurrent producers (or consumers), one request in flight each
	Size       int           // message size in bytes
	Batch      int           // messages per produce request / max per consume request
	Duration   time.Duration // how long producers run
	// Msgs, when > 0, stops the producers once they have sent this many messages (in
	// whole requests), before Duration if they get there first: a consume run fills
	// exactly what a peer system is given.
	Msgs int64
	Out  io.Writer // report and progress
	// ProfileDir, when set and the bench starts the brokers, receives each broker's CPU
	// profile of the produce run (<id>.cpu.pprof, for `go tool pprof`).
	ProfileDir string
	// Insecure starts the brokers --insecure; otherwise they and the bench get
	// certificates of a CA made in the bench's directory. TLS is the bench's client
	// configuration for given Brokers (nil: plain http).
	Insecure bool
	TLS      *tls.Config
}

// Result is what a produce or consume run measured.
type Result struct {
	Msgs          int64
	Elapsed       time.Duration
	P50, P99, Max time.Duration // per request (ack latency)
	// CPU is the CPU time all brokers used during the run, when the bench started them
	// (0 otherwise): the figure that moves least with the machine's other load.
	CPU time.Duration
}

// CPUPerMillion is CPU seconds per million messages (0 when CPU was not measured).
func (r Result) CPUPerMillion() float64 {
	if r.Msgs == 0 {
		return 0
	}
	return r.CPU.Seconds() / float64(r.Msgs) * 1e6
}

func (r Result) rate() float64 { return float64(r.Msgs) / r.Elapsed.Seconds() }

// env is a set of brokers and partitions to measure.
type env struct {
	cfg   Config
	cl    *brokerclient.Client
	peers []brokerapi.Peer
	procs []*proc // nil when the brokers were given
	dir   string
	topic string
}

func setup(ctx context.Context, cfg Config) (*env, error) {
	if cfg.Partitions <= 0 || cfg.Clients <= 0 || cfg.Size <= 0 || cfg.Batch <= 0 {
		return nil, errors.New("brokerbench: partitions, clients, size and batch must be positive")
	}
	e := &env{cfg: cfg, topic: fmt.Sprintf("bench%d", time.Now().UnixNano()%1e6)}
	if len(cfg.Brokers) == 0 {
		var err error
		if e.dir, err = os.MkdirTemp("", "quorumq-bench-"); err != nil {
			return nil, err
		}
		fmt.Fprintf(cfg.Out, "starting 3 brokers (data and logs in %s)\n", e.dir)
		if e.procs, cfg.TLS, err = startBrokers(ctx, cfg.Binary, e.dir, 3, cfg.ProfileDir != "", cfg.Insecure); err != nil {
			return nil, err
		}
		for _, p := range e.procs {
			e.peers = append(e.peers, p.peer)
			cfg.Brokers = append(cfg.Brokers, p.peer.HTTPAddr)
		}
	}
	e.cl = brokerclient.New(cfg.Brokers...)
	e.cl.HTTP = newDirectClient(cfg.TLS)
	e.cl.Secure(cfg.TLS, "")
	if e.peers == nil {
		for _, addr := range cfg.Brokers {
			var h brokerapi.HealthReply
			if err := e.cl.Do(ctx, http.MethodGet, addr, "/healthz", nil, &h); err != nil {
				return nil, fmt.Errorf("brokerbench: %s: %w", addr, err)
			}
			e.peers = append(e.peers, brokerapi.Peer{ID: h.ID, RaftAddr: h.RaftAddr, HTTPAddr: addr})
		}
	}
	if len(e.peers) < 3 {
		return nil, errors.New("brokerbench: needs 3 brokers for RF 3")
	}
	start := time.Now()
	if err := e.createPartitions(ctx); err != nil {
		e.close()
		return nil, err
	}
	if err := e.waitAllLed(ctx); err != nil {
		e.close()
		return nil, err
	}
	fmt.Fprintf(cfg.Out, "%d partitions (RF 3) created and led in %v\n", cfg.Partitions, time.Since(start).Round(time.Millisecond))
	return e, nil
}

// createPartitions spreads partition i over brokers i, i+1, i+2 (mod n), 16 at a time.
// Creating a replica is idempotent, so one that timed out (1,000 partitions on a busy
// machine) is asked again, up to 5 times.
func (e *env) createPartitions(ctx context.Context) error {
	sem := make(chan struct{}, 16)
	errs := make(chan error, e.cfg.Partitions)
	for i := range e.cfg.Partitions {
		sem <- struct{}{}
		go func() {
			defer func() { <-sem }()
			var peers []brokerapi.Peer
			for k := range 3 {
				peers = append(peers, e.peers[(i+k)%len(e.peers)])
			}
			var err error
			for try := range 5 {
				if err = e.cl.CreatePartition(ctx, e.topic, i, peers); err == nil || ctx.Err() != nil {
					break
				}
				time.Sleep(time.Duration(try+1) * time.Second)
			}
			errs <- err
		}()
	}
	var all []error
	for range e.cfg.Partitions {
		all = append(all, <-errs)
	}
	return errors.Join(all...)
}

// waitAllLed waits until every partition of the topic has a leader among the brokers
// that are up.
func (e *env) waitAllLed(ctx context.Context) error {
	for {
		led := map[int]bool{}
		for _, p := range e.peers {
			var list brokerapi.ListReplicasReply
			sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			err := e.cl.Do(sctx, http.MethodGet, p.HTTPAddr, "/replicas", nil, &list)
			cancel()
			if err != nil {
				continue
			}
			for _, r := range list.Replicas {
				if r.Topic == e.topic && r.IsLeader {
					led[r.Partition] = true
				}
			}
		}
		if len(led) == e.cfg.Partitions {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("brokerbench: %d of %d partitions led: %w", len(led), e.cfg.Partitions, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (e *env) close() {
	stopAll(e.procs)
	if e.dir != "" {
		os.RemoveAll(e.dir)
	}
}

// rss prints each started broker's memory.
func (e *env) rss(when string) {
	for _, p := range e.procs {
		if u, err := readUsage(p.cmd.Process.Pid); err == nil {
			fmt.Fprintf(e.cfg.Out, "  %s RSS %s: %.0f MiB (anonymous %.0f MiB)\n", p.peer.ID, when, mib(u.rss), mib(u.anon))
		}
	}
}

func payload(size int) string {
	const letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	b := make([]byte, size)
	for i := range b {
		b[i] = letters[rand.IntN(len(letters))]
	}
	return string(b)
}

// Produce runs Clients producers for Duration and reports throughput and latency.
func Produce(ctx context.Context, cfg Config) (Result, error) {
	e, err := setup(ctx, cfg)
	if err != nil {
		return Result{}, err
	}
	defer e.close()
	e.rss("before")
	profiled := e.profile(ctx)
	cpu0 := e.cpu()
	res, err := e.produce(ctx, true)
	if err != nil {
		return res, err
	}
	if len(e.procs) > 0 {
		res.CPU = e.cpu() - cpu0
	}
	e.report("produce", res)
	e.rss("after")
	if err := profiled(); err != nil {
		fmt.Fprintf(e.cfg.Out, "  profiles: %v\n", err)
	}
	return res, nil
}

// cpu sums the CPU time the bench's brokers have used so far.
func (e *env) cpu() time.Duration {
	var total time.Duration
	for _, p := range e.procs {
		if d, err := ProcessCPU(p.cmd.Process.Pid); err == nil {
			total += d
		}
	}
	return total
}

// profile starts fetching a CPU profile of each broker for the run's duration; the
// returned wait blocks until they are written to cfg.ProfileDir.
func (e *env) profile(ctx context.Context) (wait func() error) {
	if e.cfg.ProfileDir == "" || len(e.procs) == 0 {
		return func() error { return nil }
	}
	if err := os.MkdirAll(e.cfg.ProfileDir, 0o755); err != nil {
		return func() error { return err }
	}
	secs := max(1, int(e.cfg.Duration.Seconds()))
	errs := make(chan error, len(e.procs))
	for _, p := range e.procs {
		go func() {
			path := filepath.Join(e.cfg.ProfileDir, p.peer.ID+".cpu.pprof")
			url := fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", p.pprof, secs)
			errs <- fetchTo(ctx, url, path)
		}()
	}
	return func() error {
		var all []error
		for range e.procs {
			all = append(all, <-errs)
		}
		if err := errors.Join(all...); err != nil {
			return err
		}
		fmt.Fprintf(e.cfg.Out, "  CPU profiles of the brokers in %s\n", e.cfg.ProfileDir)
		return nil
	}
}

func fetchTo(ctx context.Context, url, path string) error {
	body, err := Get(ctx, url)
	if err != nil {
		return err
	}
	defer body.Close()
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// Get GETs url, an endpoint of a process the bench started (a profile, a monitoring
// page), and returns the body of its 200 OK reply.
func Get(ctx context.Context, url string) (io.ReadCloser, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, fmt.Errorf("%s: %s", url, resp.Status)
	}
	return resp.Body, nil
}

// produce runs the producers; each produces to partition (client mod Partitions).
func (e *env) produce(ctx context.Context, progress bool) (Result, error) {
	var body []byte // every request sends the same messages
	for range e.cfg.Batch {
		body = brokerapi.AppendBatch(body, payload(e.cfg.Size))
	}
	runCtx, cancel := context.WithTimeout(ctx, e.cfg.Duration)
	defer cancel()
	var claimed atomic.Int64 // messages the producers have set out to send
	more := func() bool {
		return e.cfg.Msgs <= 0 || claimed.Add(int64(e.cfg.Batch)) <= e.cfg.Msgs
	}
	return e.runClients(progress, func(c int, count *atomic.Int64, lats *[]time.Duration) error {
		producer := fmt.Sprintf("bench-%d", c)
		for seq := uint64(1); runCtx.Err() == nil && more(); seq++ {
			t0 := time.Now()
			if _, err := e.cl.ProduceBatch(runCtx, e.topic, c%e.cfg.Partitions, producer, seq, body); err != nil {
				if runCtx.Err() == nil {
					return err
				}
				break
			}
			*lats = append(*lats, time.Since(t0))
			count.Add(int64(e.cfg.Batch))
		}
		return nil
	})
}

// runClients runs fn for clients 0 to Clients-1 at once, each adding the messages it
// handled to count and appending its request latencies, and summarizes them with the
// first error.
func (e *env) runClients(progress bool, fn func(c int, count *atomic.Int64, lats *[]time.Duration) error) (Result, error) {
	var (
		count atomic.Int64
		wg    sync.WaitGroup
		mu    sync.Mutex
		lats  []time.Duration
		first error
	)
	stopProgress := e.progress(&count, progress)
	start := time.Now()
	for c := range e.cfg.Clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []time.Duration
			err := fn(c, &count, &mine)
			mu.Lock()
			lats, first = append(lats, mine...), cmpErr(first, err)
			mu.Unlock()
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	stopProgress()
	return summarize(count.Load(), elapsed, lats), first
}

func cmpErr(first, err error) error {
	if first != nil {
		return first
	}
	return err
}

// Median is the middle value of f over rs (the mean of the two middle ones for an even count).
func Median[T any](rs []T, f func(T) float64) float64 {
	if len(rs) == 0 {
		return 0
	}
	vs := make([]float64, len(rs))
	for i, r := range rs {
		vs[i] = f(r)
	}
	slices.Sort(vs)
	mid := len(vs) / 2
	if len(vs)%2 == 0 {
		return (vs[mid-1] + vs[mid]) / 2
	}
	return vs[mid]
}

func summarize(n int64, elapsed time.Duration, lats []time.Duration) Result {
	r := Result{Msgs: n, Elapsed: elapsed}
	if len(lats) > 0 {
		slices.Sort(lats)
		r.P50, r.P99, r.Max = lats[len(lats)/2], lats[len(lats)*99/100], lats[len(lats)-1]
	}
	return r
}

// progress prints a line every second until the returned stop is called.
func (e *env) progress(count *atomic.Int64, on bool) func() {
	if !on {
		return func() {}
	}
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		start, last := time.Now(), int64(0)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-done:
				fmt.Fprintln(e.cfg.Out)
				return
			case <-t.C:
				n := count.Load()
				fmt.Fprintf(e.cfg.Out, "\r  %3.0fs  %9d msgs  %8.0f msgs/s now", time.Since(start).Seconds(), n, float64(n-last))
				last = n
			}
		}
	}()
	return func() { close(done); <-stopped }
}

func (e *env) report(what string, r Result) {
	fmt.Fprintf(e.cfg.Out, "%s: %d partitions, %d clients, %d-byte messages, %d per request\n",
		what, e.cfg.Partitions, e.cfg.Clients, e.cfg.Size, e.cfg.Batch)
	fmt.Fprintf(e.cfg.Out, "  %.0f msgs/s  %.1f MB/s  (%d msgs in %v)\n", r.rate(),
		r.rate()*float64(e.cfg.Size)/1e6, r.Msgs, r.Elapsed.Round(time.Millisecond))
	fmt.Fprintf(e.cfg.Out, "  latency per request: p50 %v  p99 %v  max %v\n", r.P50.Round(time.Microsecond),
		r.P99.Round(time.Microsecond), r.Max.Round(time.Microsecond))
	if r.CPU > 0 {
		fmt.Fprintf(e.cfg.Out, "  broker CPU: %.2f s in all, %.2f s per million messages\n", r.CPU.Seconds(), r.CPUPerMillion())
	}
}

// Consume fills the partitions for Duration, then Clients consumers drain them in
// requests of up to Batch messages.
func Consume(ctx context.Context, cfg Config) (Result, error) {
	e, err := setup(ctx, cfg)
	if err != nil {
		return Result{}, err
	}
	defer e.close()
	fill := e.cfg
	fill.Batch = max(cfg.Batch, 100)
	fe := *e
	fe.cfg = fill
	if cfg.Msgs > 0 {
		fmt.Fprintf(cfg.Out, "filling with %d messages (at most %v)\n", cfg.Msgs, cfg.Duration)
	} else {
		fmt.Fprintf(cfg.Out, "filling for %v\n", cfg.Duration)
	}
	if _, err := fe.produce(ctx, true); err != nil {
		return Result{}, err
	}
	cpu0 := e.cpu()
	res, err := e.runClients(true, func(c int, count *atomic.Int64, lats *[]time.Duration) error {
		return e.drain(ctx, fmt.Sprintf("bench-consumer-%d", c), c, count, lats)
	})
	if len(e.procs) > 0 {
		res.CPU = e.cpu() - cpu0
	}
	e.report("consume", res)
	return res, err
}

// drain reads the partitions client c owns (c, c+Clients, ...) to the end.
func (e *env) drain(ctx context.Context, consumer string, c int, count *atomic.Int64, lats *[]time.Duration) error {
	for part := c; part < e.cfg.Partitions; part += e.cfg.Clients {
		off, err := e.cl.Register(ctx, e.topic, part, consumer)
		if err != nil {
			return err
		}
		for {
			t0 := time.Now()
			r, err := e.cl.Consume(ctx, e.topic, part, consumer, off, e.cfg.Batch)
			if err != nil {
				return err
			}
			*lats = append(*lats, time.Since(t0))
			if len(r.Messages) == 0 {
				break
			}
			off += uint64(len(r.Messages))
			count.Add(int64(len(r.Messages)))
		}
	}
	return nil
}
