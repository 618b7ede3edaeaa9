// Command jsbench runs quorumq's produce benchmark and the same workload on a 3-node
// NATS JetStream cluster (R3 file stream) on this machine, in both of JetStream's
// durability modes, and prints quorumq's ratio to each. `make bench` runs it after
// install.sh has put nats-server and nats into bin/.
//
// The workloads: 1 KiB messages to one partition (one stream), from 1 producer one
// message at a time (msgs/s, p50/p99 ack latency) and from 4 and 64 concurrent
// producers (msgs/s); and consume: the same 200,000 messages read by one quorumq client
// against JetStream's ordered and durable consumers, and 4 partitions × 4 clients against
// 4 clients of the durable consumer. quorumq's producers always have one request in flight; JetStream
// is measured both that way (sync) and with its pipelined async publisher, the figure
// the broker's targets were set against. Every workload runs -runs times (3), interleaved,
// and the table shows medians, with the CPU time of all server processes per million
// messages beside each throughput (read from /proc).
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/quorumq/quorumq/internal/brokerbench"
)

var (
	syncOne    = jsWorkload{clients: 1, msgs: 4_000}
	syncFour   = jsWorkload{clients: 4, msgs: 12_000}
	syncSixty  = jsWorkload{clients: 64, msgs: 64_000}
	asyncFour  = jsWorkload{clients: 4, async: true, msgs: 400_000}
	asyncSixty = jsWorkload{clients: 64, async: true, msgs: 400_000}
)

// consumeMsgs is what every consume run reads, on both systems (200 MiB at 1 KiB).
const consumeMsgs = 200_000

// qRun is one quorumq run: producers each with one request of batch messages in
// flight, or, when consumers > 0, that many consumers each draining its own partition
// of consumeMsgs/consumers messages in requests of up to batch.
type qRun struct{ producers, batch, consumers int }

// row is one line of the comparison: a quorumq run against a JetStream workload.
type row struct {
	label  string
	q      qRun
	js     jsWorkload
	metric string // "msgs/s", "p50" or "p99"
}

func plan(batch, consumeBatch int, scale float64) []row {
	rows := []row{
		{"1 producer, one msg at a time", qRun{1, 1, 0}, syncOne, "msgs/s"},
		{"1 producer, one msg at a time", qRun{1, 1, 0}, syncOne, "p50"},
		{"1 producer, one msg at a time", qRun{1, 1, 0}, syncOne, "p99"},
		{"4 producers vs JS sync, 4 clients", qRun{4, 1, 0}, syncFour, "msgs/s"},
		{"4 producers vs JS async, 4 clients", qRun{4, 1, 0}, asyncFour, "msgs/s"},
		{"64 producers vs JS sync, 64 clients", qRun{64, 1, 0}, syncSixty, "msgs/s"},
		{"64 producers vs JS async, 64 clients", qRun{64, 1, 0}, asyncSixty, "msgs/s"},
	}
	if batch > 1 {
		rows = append(rows,
			row{fmt.Sprintf("4 producers, %d msgs/request vs JS async, 4 clients", batch), qRun{4, batch, 0}, asyncFour, "msgs/s"},
			row{fmt.Sprintf("64 producers, %d msgs/request vs JS async, 64 clients", batch), qRun{64, batch, 0}, asyncSixty, "msgs/s"})
	}
	if consumeBatch > 0 {
		msgs := int(consumeMsgs * scale)
		one, four := qRun{0, consumeBatch, 1}, qRun{0, consumeBatch, 4}
		rows = append(rows,
			row{fmt.Sprintf("consume, 1 client, up to %d msgs/request vs JS ordered, 1 client", consumeBatch), one,
				jsWorkload{clients: 1, msgs: msgs, consumer: "ordered"}, "msgs/s"},
			row{fmt.Sprintf("consume, 1 client, up to %d msgs/request vs JS durable, 1 client", consumeBatch), one,
				jsWorkload{clients: 1, msgs: msgs, consumer: "consume"}, "msgs/s"},
			row{fmt.Sprintf("consume, 4 partitions × 4 clients, up to %d msgs/request vs JS durable, 4 clients", consumeBatch), four,
				jsWorkload{clients: 4, msgs: msgs, consumer: "consume"}, "msgs/s"})
	}
	return rows
}

// jsRuns are the JetStream workloads the rows compare with, each once, in order.
func jsRuns(rows []row) []jsWorkload {
	var ws []jsWorkload
	for _, r := range rows {
		if !slices.Contains(ws, r.js) {
			ws = append(ws, r.js)
		}
	}
	return ws
}

type config struct {
	quorumq  string
	natsBin  string
	duration time.Duration
	scale    float64
	batch    int
	runs     int
	profile  string
	consume  int
}

func main() {
	var cfg config
	flag.StringVar(&cfg.quorumq, "quorumq", "bin/quorumq", "quorumq binary (starts the brokers)")
	flag.StringVar(&cfg.natsBin, "nats-bin", "bin", "directory with nats-server and nats")
	flag.DurationVar(&cfg.duration, "duration", 10*time.Second, "how long each quorumq run produces")
	flag.Float64Var(&cfg.scale, "scale", 1, "multiplies the message count of each JetStream run")
	flag.IntVar(&cfg.batch, "batch", 0, "if > 1, also run quorumq's 4 and 64 producers with this many messages per request (against JetStream async)")
	flag.IntVar(&cfg.consume, "consume", 1000, "max messages per quorumq consume request in the consume rows (0: no consume rows)")
	flag.IntVar(&cfg.runs, "runs", 3, "runs of every workload (interleaved); the table shows each figure's median")
	flag.StringVar(&cfg.profile, "profile", "", "write the brokers' CPU profiles of the 4-producer batched run (or 4 × 1 without -batch) to this directory")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "jsbench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, cfg config, out io.Writer) error {
	qbin, err := filepath.Abs(cfg.quorumq)
	if err != nil {
		return err
	}
	nats := natsCLI{bin: filepath.Join(cfg.natsBin, "nats")}
	server := filepath.Join(cfg.natsBin, "nats-server")
	for _, bin := range []string{qbin, nats.bin, server} {
		if _, err := os.Stat(bin); err != nil {
			return fmt.Errorf("%w (make bench builds and installs it)", err)
		}
	}

	if cfg.runs < 1 {
		return fmt.Errorf("-runs must be at least 1")
	}
	rows := plan(cfg.batch, cfg.consume, cfg.scale)
	profiled := qRun{4, max(1, cfg.batch), 0}
	q := map[qRun][]brokerbench.Result{}
	for i := range cfg.runs {
		for _, r := range rows {
			if len(q[r.q]) > i {
				continue
			}
			res, err := runQuorumq(ctx, cfg, qbin, r.q, i, r.q == profiled && i == 0, out)
			if err != nil {
				return fmt.Errorf("quorumq %+v: %w", r.q, err)
			}
			q[r.q] = append(q[r.q], res)
		}
	}

	js := map[string]map[jsWorkload][]jsResult{}
	for _, d := range durabilities {
		res, err := runJetStream(ctx, cfg, jsRuns(rows), nats, server, d, out)
		if err != nil {
			return fmt.Errorf("jetstream %s: %w", d.name, err)
		}
		js[d.name] = res
	}
	printTable(out, cfg.runs, rows, q, js)
	return nil
}

// runQuorumq is run i of q on three brokers started for it.
func runQuorumq(ctx context.Context, cfg config, qbin string, q qRun, i int, profiled bool, out io.Writer) (brokerbench.Result, error) {
	bc := brokerbench.Config{Binary: qbin, Partitions: 1, Clients: q.producers, Size: 1024, Batch: q.batch, Duration: cfg.duration, Out: out}
	if q.consumers > 0 {
		bc.Partitions, bc.Clients, bc.Msgs = q.consumers, q.consumers, int64(consumeMsgs*cfg.scale)
		bc.Duration = 10 * time.Minute // the fill ends at Msgs
		fmt.Fprintf(out, "\n== quorumq (run %d of %d): consume %d msgs, %d partition(s) × %d client(s), up to %d msgs per request, 1 KiB, RF 3\n",
			i+1, cfg.runs, bc.Msgs, q.consumers, q.consumers, q.batch)
		return brokerbench.Consume(ctx, bc)
	}
	fmt.Fprintf(out, "\n== quorumq (run %d of %d): %d producer(s), %d msg(s) per request, 1 KiB, 1 partition (RF 3), %v\n",
		i+1, cfg.runs, q.producers, q.batch, cfg.duration)
	if profiled {
		bc.ProfileDir = cfg.profile
	}
	return brokerbench.Produce(ctx, bc)
}

func runJetStream(ctx context.Context, cfg config, runs []jsWorkload, nats natsCLI, server string, d durability, out io.Writer) (map[jsWorkload][]jsResult, error) {
	fmt.Fprintf(out, "\n== JetStream, durability %s: 3 servers, R3 file stream, 1 KiB\n", d.name)
	c, err := startCluster(ctx, server, d)
	if err != nil {
		return nil, err
	}
	defer c.stop()
	leader, err := nats.createStream(ctx, c)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(out, "  stream leader %s; clients connect to it\n", leader.name)
	res := map[jsWorkload][]jsResult{}
	for i := range cfg.runs {
		for _, w := range runs {
			scaled := w
			if w.consumer == "" { // consume rows are scaled in plan, like quorumq's
				scaled.msgs = max(w.clients, int(float64(w.msgs)*cfg.scale))
			}
			if err := nats.prepare(ctx, leader.url(), scaled); err != nil {
				return nil, err
			}
			cpu0 := c.cpu()
			r, err := nats.bench(ctx, leader.url(), scaled)
			if err != nil {
				// On a loaded machine the pipelined publishers can time out on acks
				// (PubAsync ack timeout): the run is left out of the medians, not
				// the whole comparison.
				if ctx.Err() != nil {
					return nil, err
				}
				fmt.Fprintf(out, "  run %d: %-18s failed, left out: %s\n", i+1, w.String()+":", lastLine(err))
				continue
			}
			r.msgs, r.cpu = scaled.msgs, c.cpu()-cpu0
			lat := fmt.Sprintf("p50 %-9v p99 %-9v", r.p50.Round(time.Microsecond), r.p99.Round(time.Microsecond))
			if w.consumer != "" {
				lat = fmt.Sprintf("%-27s", "(no latencies)")
			}
			fmt.Fprintf(out, "  run %d: %-18s %8.0f msgs/s  %s CPU %.2f s/M msgs (%d msgs, %v)\n", i+1, w.String()+":", r.rate,
				lat, r.cpuPerMillion(), scaled.msgs, r.elapsed.Round(100*time.Millisecond))
			res[w] = append(res[w], r)
		}
	}
	return res, nil
}

// cpuMetric is the table's CPU row: CPU seconds of all server processes per million
// messages, the figure that moves least with the machine and the day.
const cpuMetric = "CPU s/M msgs"

func printTable(out io.Writer, runs int, rows []row, q map[qRun][]brokerbench.Result, js map[string]map[jsWorkload][]jsResult) {
	fmt.Fprintf(out, "\n== quorumq vs NATS JetStream (1 KiB, R3, 3 nodes on this machine; median of %d runs; ratio = quorumq / JetStream, for latency and CPU lower is better)\n", runs)
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "workload\tmetric\tquorumq\tJetStream default\tratio\tJetStream always\tratio\t")
	for _, r := range rows {
		metrics := []string{r.metric}
		if r.metric == "msgs/s" {
			metrics = append(metrics, cpuMetric)
		}
		for _, m := range metrics {
			qv := brokerbench.Median(q[r.q], func(res brokerbench.Result) float64 { return metric(m, res) })
			cells := []string{r.label, m, format(m, qv)}
			for _, d := range durabilities {
				runs := js[d.name][r.js]
				if len(runs) == 0 {
					cells = append(cells, "failed", "-")
					continue
				}
				jv := brokerbench.Median(runs, func(res jsResult) float64 { return jsMetric(m, res) })
				cells = append(cells, format(m, jv), fmt.Sprintf("%.2f×", qv/jv))
			}
			fmt.Fprintln(tw, strings.Join(cells, "\t")+"\t")
		}
	}
	tw.Flush()
}

// metric returns a rate in msgs/s or a latency in milliseconds.
func metric(name string, r brokerbench.Result) float64 {
	switch name {
	case "p50":
		return ms(r.P50)
	case "p99":
		return ms(r.P99)
	case cpuMetric:
		return r.CPUPerMillion()
	}
	return float64(r.Msgs) / r.Elapsed.Seconds()
}

func jsMetric(name string, r jsResult) float64 {
	switch name {
	case "p50":
		return ms(r.p50)
	case "p99":
		return ms(r.p99)
	case cpuMetric:
		return r.cpuPerMillion()
	}
	return r.rate
}

func (r jsResult) cpuPerMillion() float64 {
	if r.msgs == 0 {
		return 0
	}
	return r.cpu.Seconds() / float64(r.msgs) * 1e6
}

// lastLine is the last non-empty line of err's message: nats's own error, after
// its output.
func lastLine(err error) string {
	lines := strings.Split(strings.TrimSpace(err.Error()), "\n")
	return lines[len(lines)-1]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func format(name string, v float64) string {
	switch name {
	case "msgs/s":
		return fmt.Sprintf("%.0f", v)
	case cpuMetric:
		return fmt.Sprintf("%.2f", v)
	}
	return fmt.Sprintf("%.2f ms", v)
}
