// Command atmbench runs `quorumq bench atm`'s workload (random transfers between 100
// accounts, each client with one transfer in flight) on three quorumq ATMs and the same
// transfers on a 3-member etcd 3.4 cluster on this machine, as optimistic transactions
// (read both balances, then write both if neither changed), and prints quorumq's ratio.
// `make bench-atm` runs it after install.sh has put etcd into bin/.
//
// Every concurrency runs -runs times (3), interleaved between the two systems, and the
// table shows medians, with the CPU time of each system's three processes per transfer.
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
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/quorumq/quorumq/internal/brokerbench"
)

type config struct {
	quorumq, etcd string
	clients       []int
	duration      time.Duration
	runs          int
	accounts      int
	insecure      bool
}

func main() {
	var (
		cfg     config
		clients string
	)
	flag.StringVar(&cfg.quorumq, "quorumq", "bin/quorumq", "quorumq binary (starts the ATMs)")
	flag.StringVar(&cfg.etcd, "etcd", "bin/etcd", "etcd 3.4 binary")
	flag.StringVar(&clients, "clients", "1,64", "concurrencies to measure, comma-separated")
	flag.DurationVar(&cfg.duration, "duration", 10*time.Second, "how long each run transfers")
	flag.IntVar(&cfg.runs, "runs", 3, "runs of every concurrency on each system (interleaved); the table shows medians")
	flag.IntVar(&cfg.accounts, "accounts", 100, "accounts to transfer between")
	flag.BoolVar(&cfg.insecure, "insecure", false, "run the ATMs --insecure (plain http, no tokens; etcd always runs so)")
	flag.Parse()
	for _, f := range strings.Split(clients, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			fmt.Fprintf(os.Stderr, "atmbench: -clients: %q is not a positive number\n", f)
			os.Exit(2)
		}
		cfg.clients = append(cfg.clients, n)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "atmbench:", err)
		os.Exit(1)
	}
}

// result is one run: completed transfers (done or refused for funds) and their latencies.
type result struct {
	done     int
	elapsed  time.Duration
	p50, p99 time.Duration
	cpu      time.Duration // the system's processes during the run
}

func summarize(lats []time.Duration, elapsed time.Duration) result {
	r := result{done: len(lats), elapsed: elapsed}
	if len(lats) > 0 {
		slices.Sort(lats)
		r.p50, r.p99 = lats[len(lats)/2], lats[len(lats)*99/100]
	}
	return r
}

func accountNames(n int) []string {
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("bench-%03d", i) // the names `quorumq bench atm` uses
	}
	return names
}

// system is one side of the comparison.
type system struct {
	c     *cluster
	bench func(ctx context.Context, c *cluster, clients, accounts int, d time.Duration, log io.Writer) (result, error)
}

func run(ctx context.Context, cfg config, out io.Writer) error {
	if cfg.runs < 1 {
		return fmt.Errorf("-runs must be at least 1")
	}
	qbin, err := filepath.Abs(cfg.quorumq)
	if err != nil {
		return err
	}
	for _, bin := range []string{qbin, cfg.etcd} {
		if _, err := os.Stat(bin); err != nil {
			return fmt.Errorf("%w (make bench-atm builds and installs it)", err)
		}
	}
	dir, err := os.MkdirTemp("", "quorumq-atmbench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	q, err := startATMs(ctx, qbin, mkdir(filepath.Join(dir, "quorumq")), cfg.insecure)
	if err != nil {
		return err
	}
	defer q.stop()
	e, err := startEtcd(ctx, cfg.etcd, mkdir(filepath.Join(dir, "etcd")))
	if err != nil {
		return err
	}
	defer e.stop()
	secured := "secured (TLS, tokens)"
	if cfg.insecure {
		secured = "--insecure"
	}
	fmt.Fprintf(out, "3 quorumq ATMs (%s) and 3 etcd members (plain http, JSON gateway) on this machine; %d accounts, %v per run\n",
		secured, cfg.accounts, cfg.duration)
	systems := []system{
		{q, benchATMs},
		{e, benchEtcd},
	}
	res := map[string]map[int][]result{}
	for i := range cfg.runs {
		for _, n := range cfg.clients {
			for _, s := range systems {
				fmt.Fprintf(out, "\n== %s (run %d of %d): %d client(s)\n", s.c.name, i+1, cfg.runs, n)
				cpu0 := s.c.cpu()
				r, err := s.bench(ctx, s.c, n, cfg.accounts, cfg.duration, out)
				if err != nil {
					return err
				}
				r.cpu = s.c.cpu() - cpu0
				fmt.Fprintf(out, "  %s: %.0f transfers/s  p50 %v  p99 %v  CPU %.2f ms per transfer\n", s.c.name, r.rate(),
					r.p50.Round(10*time.Microsecond), r.p99.Round(10*time.Microsecond), r.cpuPerTransfer())
				if res[s.c.name] == nil {
					res[s.c.name] = map[int][]result{}
				}
				res[s.c.name][n] = append(res[s.c.name][n], r)
			}
		}
	}
	printTable(out, cfg.runs, cfg.clients, res["quorumq"], res["etcd"])
	return nil
}

func mkdir(d string) string {
	os.MkdirAll(d, 0o755)
	return d
}

func (r result) rate() float64 { return float64(r.done) / r.elapsed.Seconds() }

func (r result) cpuPerTransfer() float64 {
	if r.done == 0 {
		return 0
	}
	return float64(r.cpu) / float64(time.Millisecond) / float64(r.done)
}

var metrics = []struct {
	name string
	f    func(result) float64
	unit string
}{
	{"transfers/s", result.rate, "%.0f"},
	{"p50", func(r result) float64 { return ms(r.p50) }, "%.2f ms"},
	{"p99", func(r result) float64 { return ms(r.p99) }, "%.2f ms"},
	{"CPU per transfer", result.cpuPerTransfer, "%.2f ms"},
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func printTable(out io.Writer, runs int, clients []int, q, e map[int][]result) {
	fmt.Fprintf(out, "\n== quorumq ATMs vs etcd 3.4 optimistic transactions (3 nodes on this machine; median of %d runs; ratio = quorumq / etcd, for latency and CPU lower is better)\n", runs)
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "clients\tmetric\tquorumq\tetcd\tratio\t")
	for _, n := range clients {
		for _, m := range metrics {
			qv, ev := brokerbench.Median(q[n], m.f), brokerbench.Median(e[n], m.f)
			fmt.Fprintf(tw, "%d\t%s\t"+m.unit+"\t"+m.unit+"\t%.2f×\t\n", n, m.name, qv, ev, qv/ev)
		}
	}
	tw.Flush()
}
