package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"time"
)

const (
	stream  = "benchstream"
	subject = "bench.quorumq"
)

// jsWorkload is one `nats bench js` run. nats bench counts messages, not time, so
// msgs is sized to take a few seconds here with `sync_interval: always`.
type jsWorkload struct {
	clients int
	async   bool // pipelined publishes (--batch 500 in flight per client) instead of one at a time
	msgs    int
	// consumer, when set, reads msgs messages (published beforehand, not measured)
	// instead of publishing: "ordered" (an ephemeral ordered consumer) or "consume" (the
	// durable consumer, R3, explicit acks).
	consumer string
}

func (w jsWorkload) String() string {
	mode := "sync"
	switch {
	case w.consumer == "consume":
		mode = "durable"
	case w.consumer != "":
		mode = w.consumer
	case w.async:
		mode = "async"
	}
	if w.clients == 1 {
		return mode + ", 1 client"
	}
	return fmt.Sprintf("%s, %d clients", mode, w.clients)
}

// jsResult is what nats bench printed for a run.
type jsResult struct {
	rate     float64 // msgs/s, all clients together
	p50, p99 time.Duration
	elapsed  time.Duration
	msgs     int
	cpu      time.Duration // the servers' CPU time during the run
}

type natsCLI struct {
	bin string
}

func (n natsCLI) run(ctx context.Context, server string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, n.bin, append([]string{"--no-context", "-s", server}, args...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("nats %s: %w\n%s", strings.Join(args, " "), err, out.String())
	}
	return out.String(), nil
}

func benchArgs(clients, msgs int, async bool, extra ...string) []string {
	mode := "sync"
	if async {
		mode = "async"
	}
	args := []string{"bench", "js", "pub", mode, subject, "--stream", stream,
		"--replicas", "3", "--storage", "file", "--size", "1KiB",
		"--clients", strconv.Itoa(clients), "--msgs", strconv.Itoa(msgs), "--no-progress"}
	return append(args, extra...)
}

// durableConsumer is the name nats bench gives its durable consumer when none is named.
const durableConsumer = "nats-bench"

func (w jsWorkload) args() []string {
	if w.consumer == "" {
		return benchArgs(w.clients, w.msgs, w.async, "--purge")
	}
	return []string{"bench", "js", w.consumer, "--stream", stream, "--size", "1KiB",
		"--clients", strconv.Itoa(w.clients), "--msgs", strconv.Itoa(w.msgs), "--no-progress"}
}

// prepare readies the stream for w: a consumer run finds msgs messages in an emptied
// stream (published by 4 pipelined clients) and no durable consumer left by a run
// before. Publishers purge the stream themselves (--purge).
func (n natsCLI) prepare(ctx context.Context, server string, w jsWorkload) error {
	if w.consumer == "" {
		return nil
	}
	// The consumer may not exist (first run, or removed by its inactivity threshold).
	_, _ = n.run(ctx, server, "consumer", "rm", stream, durableConsumer, "--force")
	_, err := n.run(ctx, server, benchArgs(4, w.msgs, true, "--purge")...)
	return err
}

// createStream makes the R3 file stream (with a one-message publish, the way nats bench
// creates it) and returns the server that leads it: the measured runs connect there, so
// every publish goes straight to the stream leader, as quorumq's client does.
func (n natsCLI) createStream(ctx context.Context, c *cluster) (*natsServer, error) {
	// A cluster that has just formed may answer "no response from stream" while the
	// new stream elects its leader, or time out while the cluster still elects its
	// meta leader: try again for a while.
	for attempt := 1; ; attempt++ {
		_, err := n.run(ctx, c.urls(), benchArgs(1, 1, false, "--create")...)
		if err == nil {
			break
		}
		if attempt == 10 || !(strings.Contains(err.Error(), "no response") || strings.Contains(err.Error(), "deadline exceeded")) {
			return nil, err
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(time.Second):
		}
	}
	out, err := n.run(ctx, c.urls(), "stream", "info", stream, "--json")
	if err != nil {
		return nil, err
	}
	var info struct {
		Cluster struct {
			Leader string `json:"leader"`
		} `json:"cluster"`
	}
	if err := json.Unmarshal([]byte(out), &info); err != nil {
		return nil, fmt.Errorf("stream info: %w", err)
	}
	s, ok := c.server(info.Cluster.Leader)
	if !ok {
		return nil, fmt.Errorf("stream info: leader %q is not a cluster member", info.Cluster.Leader)
	}
	return s, nil
}

// bench runs one workload against server (after prepare): publishers purge the
// stream first so each run starts from an empty stream.
func (n natsCLI) bench(ctx context.Context, server string, w jsWorkload) (jsResult, error) {
	start := time.Now()
	out, err := n.run(ctx, server, w.args()...)
	if err != nil {
		return jsResult{}, err
	}
	r, err := parseBench(out, w.consumer == "")
	r.elapsed = time.Since(start)
	return r, err
}

var (
	// Single client: "... publisher stats: 2,278 msgs/sec ~ ...", several: "... aggregated stats: 4,745 msgs/sec".
	rateRe = regexp.MustCompile(`(?m)^\s*NATS JetStream .*stats: ([\d,.]+) msgs/sec`)
	// Single client: "P50: 413.18us" on the stats line; several: "P50 750.31us" on the
	// aggregated latency line, which comes last.
	p50Re = regexp.MustCompile(`P50:? ([\d,.]+)(ns|us|µs|ms|s)\b`)
	p99Re = regexp.MustCompile(`P99:? ([\d,.]+)(ns|us|µs|ms|s)\b`)
)

// parseBench reads a run's rate, and its latencies when it reports them (publishers;
// consumers print no percentiles).
func parseBench(out string, latencies bool) (jsResult, error) {
	var r jsResult
	m := rateRe.FindStringSubmatch(out)
	if m == nil {
		return r, fmt.Errorf("no msgs/sec in nats bench output:\n%s", out)
	}
	rate, err := strconv.ParseFloat(strings.ReplaceAll(m[1], ",", ""), 64)
	if err != nil {
		return r, err
	}
	r.rate = rate
	if !latencies {
		return r, nil
	}
	if r.p50, err = lastDuration(p50Re, out); err != nil {
		return r, err
	}
	r.p99, err = lastDuration(p99Re, out)
	return r, err
}

func lastDuration(re *regexp.Regexp, out string) (time.Duration, error) {
	all := re.FindAllStringSubmatch(out, -1)
	if all == nil {
		return 0, fmt.Errorf("no %s in nats bench output:\n%s", re, out)
	}
	m := all[len(all)-1]
	v, err := strconv.ParseFloat(strings.ReplaceAll(m[1], ",", ""), 64)
	if err != nil {
		return 0, err
	}
	unit := map[string]time.Duration{"ns": time.Nanosecond, "us": time.Microsecond, "µs": time.Microsecond, "ms": time.Millisecond, "s": time.Second}[m[2]]
	if unit == 0 {
		return 0, errors.New("unknown unit " + m[2])
	}
	return time.Duration(v * float64(unit)), nil
}
