package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/quorumq/quorumq/atm"
	"github.com/quorumq/quorumq/internal/brokerbench"
	"github.com/quorumq/quorumq/internal/freeport"
	"github.com/quorumq/quorumq/internal/secure"
)

// cluster is three server processes of one system and the addresses clients use.
type cluster struct {
	name  string
	procs []*exec.Cmd
	addrs []string // base URLs (etcd) or host:port (ATMs)
	// The ATMs' client credentials (nil TLS: plain http).
	token string
	tls   *tls.Config
}

// cpu sums the CPU time the cluster's processes have used so far.
func (c *cluster) cpu() time.Duration {
	var total time.Duration
	for _, p := range c.procs {
		if d, err := brokerbench.ProcessCPU(p.Process.Pid); err == nil {
			total += d
		}
	}
	return total
}

// stop terminates the processes, SIGKILL after 10 s.
func (c *cluster) stop() {
	for _, p := range c.procs {
		p.Process.Signal(syscall.SIGTERM)
	}
	for _, p := range c.procs {
		deadline := time.Now().Add(10 * time.Second)
		for syscall.Kill(p.Process.Pid, 0) == nil && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		p.Process.Kill()
	}
}

// startProc starts bin with its output in logPath; it dies with the bench.
func startProc(bin, logPath string, args ...string) (*exec.Cmd, error) {
	out, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer out.Close()
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	go cmd.Wait() // reap it; stop polls the pid
	return cmd, nil
}

// waitFor polls ok every 100 ms for up to a minute.
func waitFor(ctx context.Context, c *cluster, ok func() bool) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for !ok() {
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w", c.name, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
	return nil
}

// startATMs starts three quorumq ATMs (static peers, no terminal) under dir, secured
// with a CA and admin token made there unless insecure, and waits until each answers
// a read of the bank.
func startATMs(ctx context.Context, bin, dir string, insecure bool) (*cluster, error) {
	addrs, err := freeport.Addrs(6)
	if err != nil {
		return nil, err
	}
	var peers []string
	for i := range 3 {
		peers = append(peers, fmt.Sprintf("atm%d=%s", i+1, addrs[3+i]))
	}
	c := &cluster{name: "quorumq"}
	var store *secure.Store
	if !insecure {
		if store, err = secure.OpenStore(filepath.Join(dir, "credentials")); err != nil {
			return nil, err
		}
		pool, err := secure.LoadPool(store.CAPath())
		if err != nil {
			return nil, err
		}
		c.token, c.tls = store.AdminToken(), &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: pool}
	}
	for i := range 3 {
		id := fmt.Sprintf("atm%d", i+1)
		args := []string{"atm", "--id", id, "--data-dir", filepath.Join(dir, id), "--http", addrs[i], "--raft", addrs[3+i],
			"--peers", strings.Join(peers, ","), "--terminal=false", "--log-level", "warn"}
		if store == nil {
			args = append(args, "--insecure")
		} else {
			flags, err := store.ServerFlags(secure.Identity{Role: secure.RoleATM, ID: id})
			if err != nil {
				c.stop()
				return nil, err
			}
			args = append(args, flags...)
		}
		p, err := startProc(bin, filepath.Join(dir, id+".log"), args...)
		if err != nil {
			c.stop()
			return nil, err
		}
		c.procs, c.addrs = append(c.procs, p), append(c.addrs, addrs[i])
	}
	for _, a := range c.atmClients() {
		if err := waitFor(ctx, c, func() bool { _, err := a.Accounts(ctx); return err == nil }); err != nil {
			c.stop()
			return nil, fmt.Errorf("the ATMs did not form a group (logs in %s): %w", dir, err)
		}
	}
	return c, nil
}

func (c *cluster) atmClients() []*atm.Client {
	hc := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: c.tls}}
	var out []*atm.Client
	for _, a := range c.addrs {
		if c.tls != nil {
			a = "https://" + a
		}
		cl := atm.NewClient(a, hc)
		cl.Token = c.token
		out = append(out, cl)
	}
	return out
}

// benchATMs runs `quorumq bench atm`'s workload on the ATMs, its report going to log.
func benchATMs(ctx context.Context, c *cluster, clients, accounts int, d time.Duration, log io.Writer) (result, error) {
	r, err := atm.Bench(ctx, atm.BenchConfig{Addrs: c.addrs, Clients: clients, Duration: d, Accounts: accounts,
		Token: c.token, TLS: c.tls}, log)
	if err == nil && r.Failed > 0 {
		err = fmt.Errorf("quorumq: %d transfers failed", r.Failed)
	}
	return result{done: r.OK + r.Refused, elapsed: r.Elapsed, p50: r.P50, p99: r.P99}, err
}
