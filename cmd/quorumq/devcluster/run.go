package devcluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
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
	c.Print(out)
	fmt.Fprintf(out, "\n%s (Ctrl-C stops everything; data stays in %s)\n", ReadyLine, c.cfg.DataDir)
	<-ctx.Done()
	fmt.Fprintln(out, "quorumq dev: stopping")
	return nil
}

// stopGrace is how long a child gets between SIGTERM and SIGKILL.
const stopGrace = 15 * time.Second

// AddProcess starts `quorumq args...` (this same binary) as a child called name, logging
// to <data-dir>/logs/<name>.log, and records it with its addresses (e.g. "http", "raft").
// The child gets SIGTERM if the supervisor dies, and its own process group, so that a
// terminal's Ctrl-C reaches only the supervisor, which stops children in order.
func (c *Cluster) AddProcess(name, kind string, args []string, addresses map[string]string) (*Process, error) {
	logPath := filepath.Join(c.logDir, name+".log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(c.self, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		logf.Close()
		close(done)
	}()
	p := &Process{Name: name, Kind: kind, Addresses: addresses, Pid: cmd.Process.Pid, Log: logPath, Cmd: cmd.Args,
		stop: func() error { return stopChild(cmd, done) }, done: done}
	c.add(p)
	return p, c.WriteState()
}

func stopChild(cmd *exec.Cmd, done <-chan struct{}) error {
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	select {
	case <-done:
		return nil
	case <-time.After(stopGrace):
		_ = cmd.Process.Kill()
		<-done
		return fmt.Errorf("no exit within %v of SIGTERM; killed", stopGrace)
	}
}
