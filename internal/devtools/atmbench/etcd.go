package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quorumq/quorumq/internal/freeport"
)

// startEtcd starts a 3-member etcd cluster (plain http on loopback) under dir and
// waits until every member answers /health.
func startEtcd(ctx context.Context, bin, dir string) (*cluster, error) {
	addrs, err := freeport.Addrs(6)
	if err != nil {
		return nil, err
	}
	var initial []string
	for i := range 3 {
		initial = append(initial, fmt.Sprintf("e%d=http://%s", i+1, addrs[3+i]))
	}
	c := &cluster{name: "etcd"}
	for i := range 3 {
		name, client, peer := fmt.Sprintf("e%d", i+1), "http://"+addrs[i], "http://"+addrs[3+i]
		p, err := startProc(bin, filepath.Join(dir, name+".log"),
			"--name", name, "--data-dir", filepath.Join(dir, name),
			"--listen-client-urls", client, "--advertise-client-urls", client,
			"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
			"--initial-cluster", strings.Join(initial, ","), "--initial-cluster-state", "new",
			"--initial-cluster-token", "quorumq-bench")
		if err != nil {
			c.stop()
			return nil, err
		}
		c.procs, c.addrs = append(c.procs, p), append(c.addrs, client)
	}
	hc := &http.Client{Timeout: 2 * time.Second}
	for _, a := range c.addrs {
		if err := waitFor(ctx, c, func() bool {
			resp, err := hc.Get(a + "/health")
			if err != nil {
				return false
			}
			defer resp.Body.Close()
			var h struct{ Health string }
			return json.NewDecoder(resp.Body).Decode(&h) == nil && h.Health == "true"
		}); err != nil {
			c.stop()
			return nil, fmt.Errorf("etcd did not become healthy (logs in %s): %w", dir, err)
		}
	}
	return c, nil
}

// etcdBank keeps the bench's accounts in etcd as decimal cents under bench-NNN and
// moves money with optimistic transactions, through etcd's JSON gateway (/v3/kv/txn).
// The Go client (go.etcd.io/etcd/client/v3) would add gRPC and newer golang.org/x
// modules to quorumq's pinned go.mod for a bench; the gateway costs etcd a JSON↔gRPC
// translation per request (counted in its CPU).
type etcdBank struct {
	hc        *http.Client
	addrs     []string
	conflicts atomic.Int64 // transactions that found a balance changed, and started over
}

type kv struct {
	Key         string `json:"key,omitempty"`
	Value       string `json:"value,omitempty"`
	ModRevision string `json:"mod_revision,omitempty"`
}

type txnOp struct {
	Range *kv `json:"request_range,omitempty"`
	Put   *kv `json:"request_put,omitempty"`
}

type compare struct {
	Key         string `json:"key"`
	Target      string `json:"target"`
	Result      string `json:"result"`
	ModRevision string `json:"mod_revision"`
}

type txnRequest struct {
	Compare []compare `json:"compare,omitempty"`
	Success []txnOp   `json:"success"`
}

type txnReply struct {
	Succeeded bool `json:"succeeded"`
	Responses []struct {
		Range struct {
			Kvs []kv `json:"kvs"`
		} `json:"response_range"`
	} `json:"responses"`
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func (b *etcdBank) txn(ctx context.Context, addr string, req txnRequest) (txnReply, error) {
	var reply txnReply
	body, err := json.Marshal(req)
	if err != nil {
		return reply, err
	}
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, addr+"/v3/kv/txn", bytes.NewReader(body))
	if err != nil {
		return reply, err
	}
	resp, err := b.hc.Do(hr)
	if err != nil {
		return reply, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return reply, err
	}
	if resp.StatusCode != http.StatusOK {
		return reply, fmt.Errorf("etcd txn: %s: %s", resp.Status, data)
	}
	return reply, json.Unmarshal(data, &reply)
}

// account is a balance read from etcd with the revision that last changed it.
type account struct {
	cents int64
	rev   string
}

// read reads accounts by name, in one linearizable read-only transaction.
func (b *etcdBank) read(ctx context.Context, addr string, names ...string) ([]account, error) {
	req := txnRequest{}
	for _, n := range names {
		req.Success = append(req.Success, txnOp{Range: &kv{Key: b64(n)}})
	}
	reply, err := b.txn(ctx, addr, req)
	if err != nil {
		return nil, err
	}
	if len(reply.Responses) != len(names) {
		return nil, fmt.Errorf("etcd read: %d responses for %d keys", len(reply.Responses), len(names))
	}
	out := make([]account, len(names))
	for i, r := range reply.Responses {
		if len(r.Range.Kvs) != 1 {
			return nil, fmt.Errorf("etcd read: account %s not found", names[i])
		}
		v, err := base64.StdEncoding.DecodeString(r.Range.Kvs[0].Value)
		if err != nil {
			return nil, err
		}
		if out[i].cents, err = strconv.ParseInt(string(v), 10, 64); err != nil {
			return nil, fmt.Errorf("etcd read: account %s: %w", names[i], err)
		}
		out[i].rev = r.Range.Kvs[0].ModRevision
	}
	return out, nil
}

// put writes balances (cents) by name if none changed since revs (nil: unconditionally);
// false when one did.
func (b *etcdBank) put(ctx context.Context, addr string, names []string, cents []int64, revs []string) (bool, error) {
	req := txnRequest{}
	for i, n := range names {
		req.Success = append(req.Success, txnOp{Put: &kv{Key: b64(n), Value: b64(strconv.FormatInt(cents[i], 10))}})
		if revs != nil {
			req.Compare = append(req.Compare, compare{Key: b64(n), Target: "MOD", Result: "EQUAL", ModRevision: revs[i]})
		}
	}
	reply, err := b.txn(ctx, addr, req)
	return reply.Succeeded, err
}

// transfer moves cents between two accounts: read both, then write both if neither
// changed meanwhile, else start over. ok is false when from lacks the money.
func (b *etcdBank) transfer(ctx context.Context, addr, from, to string, cents int64) (ok bool, err error) {
	for ctx.Err() == nil {
		acc, err := b.read(ctx, addr, from, to)
		if err != nil {
			return false, err
		}
		if acc[0].cents < cents {
			return false, nil
		}
		done, err := b.put(ctx, addr, []string{from, to}, []int64{acc[0].cents - cents, acc[1].cents + cents},
			[]string{acc[0].rev, acc[1].rev})
		if err != nil || done {
			return done, err
		}
		b.conflicts.Add(1)
	}
	return false, ctx.Err()
}

// total sums every account's balance.
func (b *etcdBank) total(ctx context.Context, names []string) (int64, error) {
	acc, err := b.read(ctx, b.addrs[0], names...)
	if err != nil {
		return 0, err
	}
	var sum int64
	for _, a := range acc {
		sum += a.cents
	}
	return sum, nil
}

// benchEtcd funds accounts, then runs clients doing random transfers for d, spread
// over the members like quorumq's clients over its ATMs, and checks the books balance.
func benchEtcd(ctx context.Context, c *cluster, clients, accounts int, d time.Duration, log io.Writer) (result, error) {
	b := &etcdBank{hc: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: clients}}, addrs: c.addrs}
	names := accountNames(accounts)
	funds := make([]int64, accounts)
	for i := range funds {
		funds[i] = 100_000_000 // a million, in cents, as `quorumq bench atm` deposits
	}
	if _, err := b.put(ctx, c.addrs[0], names, funds, nil); err != nil {
		return result{}, fmt.Errorf("etcd: funding: %w", err)
	}
	before, err := b.total(ctx, names)
	if err != nil {
		return result{}, err
	}
	var (
		mu   sync.Mutex
		lats []time.Duration
		wg   sync.WaitGroup
		errs []error
	)
	runCtx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	start := time.Now()
	for cl := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(cl), uint64(start.UnixNano())))
			addr := c.addrs[cl%len(c.addrs)]
			var mine []time.Duration
			var failed error
			for runCtx.Err() == nil {
				from := rng.IntN(accounts)
				to := (from + 1 + rng.IntN(accounts-1)) % accounts
				t0 := time.Now()
				if _, err := b.transfer(runCtx, addr, names[from], names[to], int64(1+rng.IntN(99))); err != nil {
					if runCtx.Err() == nil {
						failed = err
					}
					break
				}
				mine = append(mine, time.Since(t0))
			}
			mu.Lock()
			lats, errs = append(lats, mine...), append(errs, failed)
			mu.Unlock()
		}()
	}
	wg.Wait()
	res := summarize(lats, time.Since(start))
	fmt.Fprintf(log, "  %d transfers, %d conflicts retried\n", res.done, b.conflicts.Load())
	if err := errors.Join(errs...); err != nil {
		return res, err
	}
	after, err := b.total(ctx, names)
	if err != nil {
		return res, err
	}
	if after != before {
		return res, fmt.Errorf("etcd: total money changed: %d cents before, %d after", before, after)
	}
	return res, nil
}
