package devcluster

import (
	"log/slog"
	"path/filepath"
	"syscall"
	"testing"
)

// TestAddProcessStopsChildren runs a stand-in child (sleep) through the same path the
// quorumq subcommands take, and checks Close stops it and clears its pid.
func TestAddProcessStopsChildren(t *testing.T) {
	dir := t.TempDir()
	c := &Cluster{cfg: Config{DataDir: dir, Logger: slog.Default()}, self: "/bin/sleep", logDir: dir, quit: make(chan struct{})}
	p, err := c.AddProcess("sleeper", "test", []string{"300"}, map[string]string{"http": "127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	pid := p.Pid
	if err := syscall.Kill(pid, 0); err != nil {
		t.Fatalf("child %d not running: %v", pid, err)
	}
	if got := c.State().Processes; len(got) != 1 || got[0].Pid != pid || got[0].Log != filepath.Join(dir, "sleeper.log") {
		t.Fatalf("state: %+v", got)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(pid, 0); err == nil {
		t.Fatalf("child %d still running after Close", pid)
	}
	if got := c.State().Processes; got[0].Pid != 0 {
		t.Fatalf("pid kept after Close: %+v", got)
	}
}
