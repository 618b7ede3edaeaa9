package devcluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"time"
)

// A Setup adds the processes of one component (managers, brokers, ATMs) once Consul and
// PostgreSQL run. Components register theirs from an init function in a file of their
// own in this package, so adding one touches nothing else.
type Setup func(ctx context.Context, c *Cluster) error

var setups []Setup

// AddSetup registers s to run, in registration order, on every `quorumq dev` start.
func AddSetup(s Setup) { setups = append(setups, s) }

// ReadyLine is printed once everything runs; tests and scripts wait for it.
const ReadyLine = "quorumq dev: ready"

// Run starts the cluster, prints it to out, then waits for ctx (Ctrl-C) and stops it.
func Run(ctx context.Context, cfg Config, out io.Writer) (err error) {
	c, err := Start(ctx, cfg)
	if err != nil {
		if ctx.Err() != nil {
			return nil // Ctrl-C while starting: Start has stopped what it started
		}
		return err
	}
	defer func() { err = errors.Join(err, c.Close()) }()
	for _, s := range setups {
		if err := s(ctx, c); err != nil {
			if ctx.Err() != nil {
				return nil // Ctrl-C while starting: the deferred Close stops what runs
			}
			return err
		}
	}
	c.markReady()
	c.Print(out)
	fmt.Fprintf(out, "\n%s (Ctrl-C stops everything; data stays in %s)\n", ReadyLine, c.cfg.DataDir)
	<-ctx.Done()
	fmt.Fprintln(out, "quorumq dev: stopping")
	return nil
}

// stopGrace is how long a child gets between SIGTERM and SIGKILL.
const stopGrace = 15 * time.Second

// AddProcess starts `quorumq args...` (this same binary) as a child called name, logging
// to <data-dir>/logs/<name>.log, records it with its addresses (e.g. "http", "raft"), and
// restarts it whenever it dies once the cluster is ready (see supervise).
func (c *Cluster) AddProcess(name, kind string, args []string, addresses map[string]string) (*Process, error) {
	sec, err := c.serverFlags(kind, name)
	if err != nil {
		return nil, err
	}
	p := &Process{Name: name, Kind: kind, Addresses: addresses, Log: filepath.Join(c.logDir, name+".log"),
		Cmd: append(append([]string{c.self}, args...), sec...)}
	p.stop = func() error { return c.stopSupervised(p) }
	c.mu.Lock()
	err = c.spawn(p)
	c.mu.Unlock()
	if err != nil {
		return nil, err
	}
	c.add(p)
	go c.supervise(p)
	return p, c.WriteState()
}
