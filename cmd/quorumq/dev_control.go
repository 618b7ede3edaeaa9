package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/quorumq/quorumq/cmd/quorumq/devcluster"
)

// restartWait bounds how long `dev restart` waits for the supervisor to report a new pid
// (its first retry comes after a second).
const restartWait = 30 * time.Second

// newDevControlCmds are `quorumq dev kill NAME` and `quorumq dev restart NAME`, for
// demos of failover against a running `quorumq dev` (which restarts whatever dies
// unless it is held down).
func newDevControlCmds() []*cobra.Command {
	var dataDir string
	kill := &cobra.Command{
		Use:   "kill NAME",
		Short: "SIGKILL a process of a running `quorumq dev` (e.g. b1, m2) and keep it down until `quorumq dev restart NAME`",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := devProcess(dataDir, args[0])
			if err != nil {
				return err
			}
			hold := devcluster.HoldPath(dataDir, p.Name)
			if err := os.MkdirAll(filepath.Dir(hold), 0o755); err != nil {
				return err
			}
			if err := os.WriteFile(hold, nil, 0o644); err != nil {
				return err
			}
			if p.Pid == 0 {
				fmt.Fprintf(cmd.OutOrStdout(), "%s is not running; held down until `quorumq dev restart %s`\n", p.Name, p.Name)
				return nil
			}
			if err := syscall.Kill(p.Pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
				return fmt.Errorf("kill %s (pid %d): %w", p.Name, p.Pid, err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "killed %s (pid %d); held down until `quorumq dev restart %s`\n", p.Name, p.Pid, p.Name)
			return nil
		},
	}
	restart := &cobra.Command{
		Use:   "restart NAME",
		Short: "Restart a process of a running `quorumq dev` (gracefully if it runs, or bring back one that `dev kill` holds down)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := devProcess(dataDir, args[0])
			if err != nil {
				return err
			}
			if err := os.Remove(devcluster.HoldPath(dataDir, p.Name)); err != nil && !errors.Is(err, os.ErrNotExist) {
				return err
			}
			if p.Pid != 0 {
				if err := syscall.Kill(p.Pid, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
					return fmt.Errorf("stop %s (pid %d): %w", p.Name, p.Pid, err)
				}
			}
			return waitNewPid(cmd.Context().Done(), cmd.OutOrStdout(), dataDir, p)
		},
	}
	for _, c := range []*cobra.Command{kill, restart} {
		c.Flags().StringVar(&dataDir, "data-dir", "./.quorumq", "the data directory of the running `quorumq dev`")
		c.PreRunE = func(cmd *cobra.Command, _ []string) error { return envFallback(cmd) }
	}
	return []*cobra.Command{kill, restart}
}

func devProcess(dataDir, name string) (devcluster.Process, error) {
	st, err := devcluster.ReadState(dataDir)
	if err != nil {
		return devcluster.Process{}, err
	}
	var names []string
	for _, p := range st.Processes {
		if p.Name == name {
			if p.Kind == "consul" || p.Kind == "postgres" {
				return p, fmt.Errorf("%s is not restarted by `quorumq dev`; only managers, brokers and ATMs are", name)
			}
			return p, nil
		}
		names = append(names, p.Name)
	}
	return devcluster.Process{}, fmt.Errorf("no process %q in %s (there are %v)", name, devcluster.StatePath(dataDir), names)
}

// waitNewPid waits until cluster.json names a running pid for p other than its old one.
func waitNewPid(stop <-chan struct{}, out io.Writer, dataDir string, p devcluster.Process) error {
	deadline := time.After(restartWait)
	for {
		if q, err := devProcess(dataDir, p.Name); err == nil && q.Pid != 0 && q.Pid != p.Pid {
			fmt.Fprintf(out, "%s restarted (pid %d)\n", p.Name, q.Pid)
			return nil
		}
		select {
		case <-deadline:
			return fmt.Errorf("%s did not come back within %v: see its log %s", p.Name, restartWait, p.Log)
		case <-stop:
			return nil
		case <-time.After(200 * time.Millisecond):
		}
	}
}
