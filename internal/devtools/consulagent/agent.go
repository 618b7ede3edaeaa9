package consulagent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/quorumq/quorumq/internal/freeport"
)

// AgentConfig describes a single-node dev agent (`consul agent -dev`, state in memory)
// with ACLs on and default deny (acl.go).
// Every port is set explicitly so several agents can run side by side; zero ports are
// replaced by free loopback ports when the agent first starts.
type AgentConfig struct {
	Bin      string // consul binary; "" means BinPath()
	DataDir  string // node id and consul.log; required
	HTTPAddr string // host:port of the HTTP API (and UI); "" means 127.0.0.1:<free port>, `quorumq dev` uses 127.0.0.1:8500
	UI       bool   // serve the web UI on HTTPAddr

	ServerPort  int // server RPC + Raft (cannot be disabled)
	SerfLANPort int // LAN gossip, TCP and UDP (cannot be disabled)

	// StopTimeout is how long Stop waits after SIGTERM before SIGKILL (default 5 s).
	StopTimeout time.Duration
}

// Agent is a running consul process started by StartAgent.
type Agent struct {
	cfg AgentConfig

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has been waited for
	log  *os.File

	mgmt    string // the management token (set before the first start, never changed)
	aclMu   sync.Mutex
	granted map[string]string // TokenFile name -> secret, created again after a restart
}

// startupTimeout bounds StartAgent when ctx has no deadline.
const startupTimeout = time.Minute

// StartAgent starts a dev agent and returns once it has elected itself leader and
// registered its own node, so registrations and health queries work right away.
func StartAgent(ctx context.Context, cfg AgentConfig) (*Agent, error) {
	if cfg.DataDir == "" {
		return nil, errors.New("consul: AgentConfig.DataDir is required")
	}
	if cfg.Bin == "" {
		bin, err := BinPath()
		if err != nil {
			return nil, err
		}
		cfg.Bin = bin
	}
	if cfg.StopTimeout <= 0 {
		cfg.StopTimeout = 5 * time.Second
	}
	if err := cfg.assignPorts(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return nil, fmt.Errorf("consul: data dir: %w", err)
	}
	a := &Agent{cfg: cfg, granted: map[string]string{}}
	if err := a.start(ctx); err != nil {
		return nil, err
	}
	return a, nil
}

func (c *AgentConfig) assignPorts() error {
	if c.HTTPAddr == "" {
		p, err := freeport.TCP(false)
		if err != nil {
			return err
		}
		c.HTTPAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(p))
	}
	if _, _, err := net.SplitHostPort(c.HTTPAddr); err != nil {
		return fmt.Errorf("consul: HTTPAddr %q must be host:port: %w", c.HTTPAddr, err)
	}
	for _, p := range []struct {
		port *int
		udp  bool
	}{{&c.ServerPort, false}, {&c.SerfLANPort, true}} {
		if *p.port != 0 {
			continue
		}
		free, err := freeport.TCP(p.udp)
		if err != nil {
			return err
		}
		*p.port = free
	}
	return nil
}

func (c AgentConfig) args(aclConfig string) []string {
	host, port, _ := net.SplitHostPort(c.HTTPAddr)
	args := []string{
		"agent", "-dev",
		"-config-file", aclConfig,
		"-client", host,
		"-bind", "127.0.0.1",
		"-data-dir", c.DataDir,
		"-http-port", port,
		"-https-port", "-1",
		"-dns-port", "-1",
		"-grpc-port", "-1",
		"-grpc-tls-port", "-1",
		"-serf-wan-port", "-1",
		"-serf-lan-port", strconv.Itoa(c.SerfLANPort),
		"-server-port", strconv.Itoa(c.ServerPort),
	}
	if c.UI {
		return append(args, "-ui")
	}
	return append(args, "-hcl", "ui_config { enabled = false }")
}

func (a *Agent) start(ctx context.Context) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, startupTimeout)
		defer cancel()
	}
	aclConfig, err := a.aclConfigFile()
	if err != nil {
		return err
	}
	logPath := a.LogPath()
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("consul: agent log: %w", err)
	}
	cmd := exec.Command(a.cfg.Bin, a.cfg.args(aclConfig)...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return fmt.Errorf("consul: start %s: %w", a.cfg.Bin, err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	a.mu.Lock()
	a.cmd, a.done, a.log = cmd, done, logFile
	a.mu.Unlock()

	if err := a.waitReady(ctx, done); err != nil {
		_ = a.Stop()
		return fmt.Errorf("consul: agent on %s not ready: %w\n%s", a.cfg.HTTPAddr, err, tail(logPath, 2048))
	}
	return a.regrant(ctx)
}

// waitReady polls until the agent has a Raft leader, its ACL system knows the
// management token, and its node is in the catalog.
func (a *Agent) waitReady(ctx context.Context, exited <-chan struct{}) error {
	client := &http.Client{Timeout: time.Second}
	base := "http://" + a.cfg.HTTPAddr
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-exited:
			return errors.New("process exited")
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
		var leader string
		if a.getJSON(ctx, client, base+"/v1/status/leader", &leader) != nil || leader == "" {
			continue
		}
		var self json.RawMessage
		if a.getJSON(ctx, client, base+"/v1/acl/token/self", &self) != nil {
			continue
		}
		var nodes []json.RawMessage
		if a.getJSON(ctx, client, base+"/v1/catalog/nodes", &nodes) == nil && len(nodes) > 0 {
			return nil
		}
	}
}

func (a *Agent) getJSON(ctx context.Context, c *http.Client, url string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	req.Header.Set("X-Consul-Token", a.mgmt)
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", url, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// HTTPAddr is the host:port of the agent's HTTP API.
func (a *Agent) HTTPAddr() string { return a.cfg.HTTPAddr }

// Config is the configuration with every port resolved.
func (a *Agent) Config() AgentConfig { return a.cfg }

// LogPath is the file receiving the agent's output.
func (a *Agent) LogPath() string { return filepath.Join(a.cfg.DataDir, "consul.log") }

// Pid is the agent's process id (0 when stopped).
func (a *Agent) Pid() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.cmd == nil {
		return 0
	}
	return a.cmd.Process.Pid
}

// Stop sends SIGTERM, then SIGKILL after StopTimeout, and waits for the process.
// Stopping a stopped agent is a no-op.
func (a *Agent) Stop() error {
	a.mu.Lock()
	cmd, done, logFile := a.cmd, a.done, a.log
	a.cmd, a.done, a.log = nil, nil, nil
	a.mu.Unlock()
	if cmd == nil {
		return nil
	}
	defer logFile.Close()
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
		return nil
	case <-time.After(a.cfg.StopTimeout):
	}
	if err := cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("consul: kill agent %d: %w", cmd.Process.Pid, err)
	}
	<-done
	return nil
}

// Restart stops the agent and starts a fresh one on the same ports and data dir; a
// dev agent keeps no services, so instances must register again (with the same
// tokens: TokenFile's are created again).
func (a *Agent) Restart(ctx context.Context) error {
	if err := a.Stop(); err != nil {
		return err
	}
	return a.start(ctx)
}

// tail returns the last n bytes of the file at path, for error messages.
func tail(path string, n int64) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.Size() > n {
		_, _ = f.Seek(-n, io.SeekEnd)
	}
	b, _ := io.ReadAll(f)
	return string(bytes.TrimSpace(b))
}
