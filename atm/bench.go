package atm

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
)

// BenchConfig is a `quorumq bench atm` run.
type BenchConfig struct {
	Addrs    []string // HTTP addresses of the ATMs
	Clients  int
	Duration time.Duration
	Accounts int
	// Token and TLS reach secured ATMs (Addrs are then https:// URLs or host:port).
	Token string
	TLS   *tls.Config
}

// BenchResult is what a run measured.
type BenchResult struct {
	OK, Refused, Failed int
	Elapsed             time.Duration
	P50, P99, Max       time.Duration
}

// PerSecond is completed transfers (done or refused by the bank) per second.
func (r BenchResult) PerSecond() float64 {
	return float64(r.OK+r.Refused) / r.Elapsed.Seconds()
}

// Bench funds cfg.Accounts accounts, then runs cfg.Clients clients doing random transfers
// through the ATMs' HTTP APIs for cfg.Duration, and reports on out. It checks that the
// total money is the same before and after.
func Bench(ctx context.Context, cfg BenchConfig, out io.Writer) (BenchResult, error) {
	if len(cfg.Addrs) == 0 || cfg.Clients <= 0 || cfg.Accounts < 2 || cfg.Duration <= 0 {
		return BenchResult{}, errors.New("bench atm: need --http, --clients > 0, --accounts >= 2 and --duration > 0")
	}
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: cfg.Clients, TLSClientConfig: cfg.TLS}}
	clients := make([]*Client, len(cfg.Addrs))
	for i, a := range cfg.Addrs {
		if cfg.TLS != nil && !strings.Contains(a, "://") {
			a = "https://" + a
		}
		clients[i] = NewClient(a, hc)
		clients[i].Token = cfg.Token
	}
	name := func(i int) string { return fmt.Sprintf("bench-%03d", i) }
	for i := range cfg.Accounts {
		if _, err := clients[0].Deposit(ctx, name(i), "1000000"); err != nil {
			return BenchResult{}, fmt.Errorf("bench atm: funding %s: %w", name(i), err)
		}
	}
	before, err := clients[0].Accounts(ctx)
	if err != nil {
		return BenchResult{}, fmt.Errorf("bench atm: %w", err)
	}
	fmt.Fprintf(out, "bench atm: %d clients over %d ATMs, %d accounts, %v\n", cfg.Clients, len(cfg.Addrs), cfg.Accounts, cfg.Duration)

	var (
		mu        sync.Mutex
		res       BenchResult
		latencies []time.Duration
		wg        sync.WaitGroup
	)
	runCtx, cancel := context.WithTimeout(ctx, cfg.Duration)
	defer cancel()
	start := time.Now()
	for c := range cfg.Clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(c), uint64(start.UnixNano())))
			var mine []time.Duration
			var ok, refused, failed int
			node := c % len(clients)
			for runCtx.Err() == nil {
				from := rng.IntN(cfg.Accounts)
				to := (from + 1 + rng.IntN(cfg.Accounts-1)) % cfg.Accounts
				amount := fmt.Sprintf("0.%02d", 1+rng.IntN(99))
				t0 := time.Now()
				_, err := clients[node].Transfer(ctx, name(from), name(to), amount)
				var apiErr *APIError
				switch {
				case err == nil:
					ok++
				case errors.As(err, &apiErr) && apiErr.Refused():
					refused++
				default:
					failed++
					node = (node + 1) % len(clients)
					time.Sleep(10 * time.Millisecond) // that ATM may be down; do not spin
					continue
				}
				mine = append(mine, time.Since(t0))
			}
			mu.Lock()
			res.OK, res.Refused, res.Failed = res.OK+ok, res.Refused+refused, res.Failed+failed
			latencies = append(latencies, mine...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	res.Elapsed = time.Since(start)
	if len(latencies) > 0 {
		slices.Sort(latencies)
		res.P50 = latencies[len(latencies)/2]
		res.P99 = latencies[len(latencies)*99/100]
		res.Max = latencies[len(latencies)-1]
	}
	fmt.Fprintf(out, "transfers: %d ok, %d refused, %d failed in %.1fs\n", res.OK, res.Refused, res.Failed, res.Elapsed.Seconds())
	fmt.Fprintf(out, "throughput: %.0f transfers/s\n", res.PerSecond())
	fmt.Fprintf(out, "latency: p50 %v  p99 %v  max %v\n", res.P50.Round(10*time.Microsecond), res.P99.Round(10*time.Microsecond), res.Max.Round(10*time.Microsecond))

	after, err := clients[len(clients)-1].Accounts(ctx)
	if err != nil {
		return res, fmt.Errorf("bench atm: %w", err)
	}
	if after.TotalCents != before.TotalCents {
		return res, fmt.Errorf("bench atm: total money changed: %s before, %s after", before.Total, after.Total)
	}
	fmt.Fprintf(out, "books balanced: total %s before and after\n", after.Total)
	return res, nil
}
