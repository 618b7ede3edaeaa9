package devcluster

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/quorumq/quorumq/internal/retry"
)

// Restart backoff: a child that keeps dying right after it starts (a broken data
// directory, a port someone took) is retried ever less often, up to a pause that still
// lets a fixed problem show within half a minute; one that ran a while is retried at once.
const (
	backoffMin = time.Second
	backoffMax = 30 * time.Second
	// healthyRun is how long a run must last for the next failure to start from
	// backoffMin again.
	healthyRun = 30 * time.Second
	// holdPoll is how often a held process's hold file is checked.
	holdPoll = 300 * time.Millisecond
)

// HoldPath is the file whose existence keeps the supervisor from restarting process
// name: `quorumq dev kill NAME` creates it, `quorumq dev restart NAME` removes it.
func HoldPath(dataDir, name string) string { return filepath.Join(dataDir, "hold", name) }

// spawn starts one run of p's command and records it in p; callers hold c.mu.
func (c *Cluster) spawn(p *Process) error {
	logf, err := os.OpenFile(p.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(p.Cmd[0], p.Cmd[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Its own process group, so that a terminal's Ctrl-C reaches only the supervisor,
	// which stops children in order; SIGTERM if the supervisor dies.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start %s: %w", p.Name, err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		logf.Close()
		close(done)
	}()
	p.Pid, p.run, p.done, p.started = cmd.Process.Pid, cmd, done, time.Now()
	return nil
}

// supervise restarts p whenever it exits while the cluster runs (once the cluster was
// ready: a child that dies while starting is a configuration problem, and Run reports it),
// unless it is held by `quorumq dev kill`. cluster.json follows every change of pid.
func (c *Cluster) supervise(p *Process) {
	backoff := retry.Policy{First: backoffMin, Max: backoffMax}.Start()
	for {
		c.mu.Lock()
		done := p.done
		c.mu.Unlock()
		select {
		case <-done:
		case <-c.quit:
			return
		}
		c.mu.Lock()
		ready, ranFor, state := c.ready, time.Since(p.started), p.run.ProcessState
		p.Pid = 0
		c.mu.Unlock()
		if !ready {
			c.cfg.Logger.Error("dev: process exited while starting", "name", p.Name, "log", p.Log)
			return
		}
		_ = c.WriteState()
		if ranFor >= healthyRun {
			backoff.Reset()
		}
		held := c.held(p.Name)
		if held {
			c.cfg.Logger.Warn("dev: process stopped and held; `quorumq dev restart "+p.Name+"` brings it back", "name", p.Name, "exit", state)
			if !c.waitUnheld(p.Name) {
				return
			}
			backoff.Reset()
		} else {
			wait, _ := backoff.Next()
			c.cfg.Logger.Warn("dev: process exited; restarting it", "name", p.Name, "exit", state, "in", wait, "log", p.Log)
			select {
			case <-time.After(wait):
			case <-c.quit:
				return
			}
		}
		c.mu.Lock()
		if c.stopping {
			c.mu.Unlock()
			return
		}
		err := c.spawn(p)
		c.mu.Unlock()
		if err != nil {
			c.cfg.Logger.Error("dev: restart failed", "name", p.Name, "err", err)
			continue // p.done is still the closed channel: the next round waits backoff again
		}
		c.cfg.Logger.Info("dev: process restarted", "name", p.Name, "pid", p.Pid)
		_ = c.WriteState()
	}
}

func (c *Cluster) held(name string) bool {
	_, err := os.Stat(HoldPath(c.cfg.DataDir, name))
	return err == nil
}

// waitUnheld waits until name's hold file is gone; false if the cluster stops first.
func (c *Cluster) waitUnheld(name string) bool {
	t := time.NewTicker(holdPoll)
	defer t.Stop()
	for c.held(name) {
		select {
		case <-t.C:
		case <-c.quit:
			return false
		}
	}
	return true
}

// stopSupervised stops p for good: no restart follows.
func (c *Cluster) stopSupervised(p *Process) error {
	c.mu.Lock()
	cmd, done := p.run, p.done
	c.mu.Unlock()
	select {
	case <-done:
		return nil // exited already (or held)
	default:
	}
	return stopChild(cmd, done)
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
