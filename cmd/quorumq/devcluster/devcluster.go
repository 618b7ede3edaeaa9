// Package devcluster is the supervisor behind `quorumq dev`: it starts a Consul dev agent
// and a private PostgreSQL, then whatever `quorumq <subcommand>` children later issues add,
// prints what runs where, records it in <data-dir>/cluster.json and stops it all in
// reverse order. Once the cluster is ready it restarts a manager, broker or ATM that dies
// (with backoff), unless `quorumq dev kill NAME` holds it down; Consul and PostgreSQL are
// reported when they die, not restarted.
package devcluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/quorumq/quorumq/internal/devtools/consulagent"
	"github.com/quorumq/quorumq/internal/devtools/pgserver"
	"github.com/quorumq/quorumq/internal/secure"
)

// Config is what `quorumq dev` passes in.
type Config struct {
	DataDir      string // everything lives here: consul/, postgres/, logs/, cluster.json
	ConsulHTTP   string // Consul HTTP API and UI, e.g. 127.0.0.1:8500
	PostgresPort int
	// Managers and Brokers are how many of each to run; the i-th (from 0) listens on the
	// given ports plus i.
	Managers, Brokers                int
	ManagerRaftPort, ManagerHTTPPort int
	BrokerRaftPort, BrokerHTTPPort   int
	Logger                           *slog.Logger
	// Insecure runs every process --insecure; otherwise the data directory holds a CA,
	// the processes' certificates, a tokens file and an admin token (made on first run).
	Insecure bool
	// PprofPort, when not 0, has every manager and broker serve its Go profiles
	// (net/http/pprof) on loopback: m1 on this port, then the other managers, then the
	// brokers on the next ones.
	PprofPort int
}

// Process is one supervised process as cluster.json shows it.
type Process struct {
	Name      string            `json:"name"`
	Kind      string            `json:"kind"`
	Addresses map[string]string `json:"addresses"`
	Pid       int               `json:"pid,omitempty"` // dropped once stopped
	Log       string            `json:"log,omitempty"`
	// Cmd is the command line that started it: a process that died (or was killed) can be
	// started again by hand with it, outside the supervisor, while `quorumq dev` runs on.
	Cmd []string `json:"cmd,omitempty"`

	stop    func() error
	done    <-chan struct{} // closed when the current run has exited (nil: not watched)
	run     *exec.Cmd       // the current run of a supervised child
	started time.Time
}

// State is the content of cluster.json.
type State struct {
	Processes   []Process `json:"processes"`
	ConsulUI    string    `json:"consul_ui"`
	ConsulHTTP  string    `json:"consul_http"`
	PostgresDSN string    `json:"postgres_dsn"`
	// The dev agent runs with ACLs and default deny: ConsulToken reads the catalog (the
	// CLI finds the managers with it), ConsulUITokenFile holds the management token the
	// UI's login asks for.
	ConsulToken       string `json:"consul_token,omitempty"`
	ConsulUITokenFile string `json:"consul_ui_token_file,omitempty"`
	// AdminToken and CA are what clients need (the CLI and the SDK read them here);
	// both empty when the cluster runs --insecure.
	AdminToken string `json:"admin_token,omitempty"`
	CA         string `json:"ca,omitempty"`
}

// Cluster is a running set of dev processes.
type Cluster struct {
	cfg    Config
	agent  *consulagent.Agent
	pg     *pgserver.Server
	self   string // this binary, for children
	logDir string
	creds  *secure.Store // nil: --insecure
	client *http.Client  // to the processes' HTTP APIs, with creds' CA and token
	// consulToken is the agent's read-only token: the supervisor's own, and the CLI's.
	consulToken string

	mu       sync.Mutex
	procs    []*Process
	notes    []string // extra lines for Print
	stopping bool
	ready    bool          // printed ready: from then on children are restarted
	quit     chan struct{} // closed by Close: supervisors stop restarting
}

// StatePath is where the cluster description is written.
func StatePath(dataDir string) string { return filepath.Join(dataDir, "cluster.json") }

// Start brings up Consul (with its UI) and PostgreSQL. On error nothing is left running.
func Start(ctx context.Context, cfg Config) (_ *Cluster, err error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.DataDir, err = filepath.Abs(cfg.DataDir); err != nil {
		return nil, err
	}
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	c := &Cluster{cfg: cfg, self: self, logDir: filepath.Join(cfg.DataDir, "logs"), quit: make(chan struct{})}
	if err := os.MkdirAll(c.logDir, 0o755); err != nil {
		return nil, err
	}
	// A new run starts everything: what `quorumq dev kill` held down in an earlier one too.
	if err := os.RemoveAll(filepath.Join(cfg.DataDir, "hold")); err != nil {
		return nil, err
	}
	if c.client, err = c.secure(); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			_ = c.Close()
		}
	}()
	// Check the fixed ports first: "address in use" deep inside a child's log helps nobody.
	pgAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(cfg.PostgresPort))
	for _, p := range []struct{ addr, flag string }{{cfg.ConsulHTTP, "--consul-http"}, {pgAddr, "--postgres-port"}} {
		if err := portFree(p.addr); err != nil {
			return nil, fmt.Errorf("%s is taken (%v): stop what uses it or choose another with %s", p.addr, err, p.flag)
		}
	}

	bin, err := consulagent.BinPath()
	if err != nil {
		return nil, fmt.Errorf("consul binary: %w (run `make consul`)", err)
	}
	c.agent, err = consulagent.StartAgent(ctx, consulagent.AgentConfig{
		Bin:      bin,
		DataDir:  filepath.Join(cfg.DataDir, "consul"),
		HTTPAddr: cfg.ConsulHTTP,
		UI:       true,
	})
	if err != nil {
		return nil, fmt.Errorf("consul: %w", err)
	}
	if c.consulToken, err = c.agent.Token(ctx, consulagent.Reader); err != nil {
		return nil, err
	}
	c.add(&Process{Name: "consul", Kind: "consul", Pid: c.agent.Pid(), Cmd: cmdline(c.agent.Pid()),
		Addresses: map[string]string{"http": c.agent.HTTPAddr()}, Log: c.agent.LogPath(), stop: c.agent.Stop})

	c.pg, err = pgserver.Start(ctx, pgserver.Config{
		DataDir: filepath.Join(cfg.DataDir, "postgres"),
		Port:    cfg.PostgresPort,
		Logger:  cfg.Logger,
	})
	if err != nil {
		return nil, err
	}
	c.add(&Process{Name: "postgres", Kind: "postgres", Pid: c.pg.Pid(), Cmd: cmdline(c.pg.Pid()),
		Addresses: map[string]string{"sql": c.pg.Addr()},
		Log:       filepath.Join(c.pg.DataDir(), "postgres.log"), stop: c.pg.Stop, done: c.pg.Done()})
	return c, c.WriteState()
}

// ConsulHTTP is the agent's HTTP address, for children's --consul flags.
func (c *Cluster) ConsulHTTP() string { return c.agent.HTTPAddr() }

// DatabaseArgs creates database name (if missing) and returns the flags that give a
// manager its DSN (without the password: a command line shows in ps) and the file
// holding the password, so that each manager gets a database of its own.
func (c *Cluster) DatabaseArgs(ctx context.Context, name string) ([]string, error) {
	if err := c.pg.CreateDatabase(ctx, name); err != nil {
		return nil, err
	}
	u, err := url.Parse(c.pg.DSN(name))
	if err != nil {
		return nil, err
	}
	u.User = url.User(u.User.Username())
	return []string{"--postgres", u.String(), "--postgres-password-file", c.pg.PasswordFile()}, nil
}

// ConsulArgs are the flags that point a child at the agent with a token that may
// register service (a discovery service name) and read the catalog; the token goes
// by file, so that ps does not show it.
func (c *Cluster) ConsulArgs(ctx context.Context, service string) ([]string, error) {
	file, err := c.agent.TokenFile(ctx, service)
	if err != nil {
		return nil, err
	}
	return []string{"--consul", c.ConsulHTTP(), "--consul-token-file", file}, nil
}

// AddNote adds a line that Print shows under the URLs (where to reach a component).
func (c *Cluster) AddNote(line string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.notes = append(c.notes, line)
}

// add records p and, when its exit can be watched and nothing restarts it, reports it.
func (c *Cluster) add(p *Process) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.procs = append(c.procs, p)
	if p.done != nil && p.run == nil {
		go c.reportExit(p)
	}
}

// markReady turns on restarting children that die.
func (c *Cluster) markReady() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ready = true
}

// reportExit logs a process that dies while the cluster is meant to be running.
func (c *Cluster) reportExit(p *Process) {
	<-p.done
	c.mu.Lock()
	stopping := c.stopping
	c.mu.Unlock()
	if !stopping {
		c.cfg.Logger.Error("dev: process exited; not restarting it", "name", p.Name, "pid", p.Pid, "log", p.Log)
	}
}

// State describes the cluster as it is now.
func (c *Cluster) State() State {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := State{Processes: make([]Process, 0, len(c.procs))}
	for _, p := range c.procs {
		st.Processes = append(st.Processes, *p)
	}
	if c.agent != nil {
		st.ConsulHTTP = c.agent.HTTPAddr()
		st.ConsulUI = "http://" + c.agent.HTTPAddr() + "/ui"
		st.ConsulToken, st.ConsulUITokenFile = c.consulToken, c.agent.ManagementTokenFile()
	}
	if c.pg != nil {
		st.PostgresDSN = c.pg.DSN("postgres")
	}
	if c.creds != nil {
		st.AdminToken, st.CA = c.creds.AdminToken(), c.creds.CAPath()
	}
	return st
}

// WriteState writes cluster.json (atomically, so readers never see half a file).
func (c *Cluster) WriteState() error {
	b, err := json.MarshalIndent(c.State(), "", "  ")
	if err != nil {
		return err
	}
	path := StatePath(c.cfg.DataDir)
	tmp := path + ".tmp"
	// Tokens and the PostgreSQL password are in it: for the user running the cluster only.
	if err := os.WriteFile(tmp, append(b, '\n'), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// Print writes the table of processes and the URLs people open.
func (c *Cluster) Print(w io.Writer) {
	st := c.State()
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tKIND\tADDRESS\tPID")
	for _, p := range st.Processes {
		addrs := make([]string, 0, len(p.Addresses))
		for _, k := range slices.Sorted(maps.Keys(p.Addresses)) {
			addrs = append(addrs, k+"="+p.Addresses[k])
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\n", p.Name, p.Kind, strings.Join(addrs, " "), p.Pid)
	}
	tw.Flush()
	fmt.Fprintf(w, "\nConsul UI:   %s (log in with the token in %s)\nPostgreSQL:  %s\nState:       %s\nLogs:        %s\n",
		st.ConsulUI, st.ConsulUITokenFile, redacted(st.PostgresDSN), StatePath(c.cfg.DataDir), c.logDir)
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, n := range c.notes {
		fmt.Fprintln(w, n)
	}
}

// Close stops every process in reverse start order (children before the services they
// use), keeps all data and rewrites cluster.json without pids.
func (c *Cluster) Close() error {
	c.mu.Lock()
	if !c.stopping {
		close(c.quit)
	}
	c.stopping = true
	procs := append([]*Process(nil), c.procs...)
	c.mu.Unlock()
	var errs []error
	for i := len(procs) - 1; i >= 0; i-- {
		p := procs[i]
		if err := p.stop(); err != nil {
			errs = append(errs, fmt.Errorf("stop %s: %w", p.Name, err))
		}
		c.mu.Lock()
		p.Pid = 0
		c.mu.Unlock()
	}
	if len(procs) > 0 {
		if err := c.WriteState(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// cmdline is the command line of a running process that another package started; nil
// when /proc cannot tell.
func cmdline(pid int) []string {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cmdline"))
	if err != nil || len(b) == 0 {
		return nil
	}
	return strings.Split(strings.TrimSuffix(string(b), "\x00"), "\x00")
}

// redacted is dsn with its password masked, for printing.
func redacted(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil {
		return dsn
	}
	return u.Redacted()
}

func portFree(addr string) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	return l.Close()
}

// ReadState reads the cluster.json that `quorumq dev` keeps in dataDir.
func ReadState(dataDir string) (State, error) {
	var st State
	b, err := os.ReadFile(StatePath(dataDir))
	if err != nil {
		return st, fmt.Errorf("%w (is `quorumq dev --data-dir %s` running?)", err, dataDir)
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return st, fmt.Errorf("%s: %w", StatePath(dataDir), err)
	}
	return st, nil
}
