package devcluster

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"time"

	"github.com/quorumq/quorumq/consul"
	"github.com/quorumq/quorumq/discovery"
	"github.com/quorumq/quorumq/manager/managerapi"
	"github.com/quorumq/quorumq/manager/meta"
)

func init() { AddSetup(startServices) }

// Default ports: the i-th manager (from 0) listens on 7101+i (Raft) and 8101+i (REST
// API), the i-th broker on 7201+i and 8201+i, so that the commands in the README work as
// they are; the ATMs use 7301+ and 8301+.
const (
	DefaultManagerRaftPort = 7101
	DefaultManagerHTTPPort = 8101
	DefaultBrokerRaftPort  = 7201
	DefaultBrokerHTTPPort  = 8201
)

// readyWait bounds how long the managers may take to elect a write manager and to see
// every broker; a cluster that is not there by then has a problem its logs show.
const readyWait = 3 * time.Minute

// service is one manager or broker to start.
type service struct {
	name, kind string
	consul     string // the discovery service it registers as
	raft, http string
	pprof      string // host:port of its Go profiles, "" for none
}

// startServices starts the brokers and the managers, all at once (the managers need one
// another to form their group), then waits until the managers agree on a write manager
// and list every broker alive: only then is the cluster usable. Brokers start first so
// that they stop last: the managers stop before they could take brokers that are
// shutting down for dead and move their replicas.
func startServices(ctx context.Context, c *Cluster) error {
	cfg := c.cfg
	managers := services("m", "manager", discovery.ServiceManager, cfg.Managers, cfg.ManagerRaftPort, cfg.ManagerHTTPPort)
	brokers := services("b", "broker", discovery.ServiceBroker, cfg.Brokers, cfg.BrokerRaftPort, cfg.BrokerHTTPPort)
	if err := assignPprof(cfg.PprofPort, append(ptrs(managers), ptrs(brokers)...)); err != nil {
		return err
	}
	if err := checkPorts(managers, "--manager-raft-port", "--manager-http-port"); err != nil {
		return err
	}
	if err := checkPorts(brokers, "--broker-raft-port", "--broker-http-port"); err != nil {
		return err
	}
	// Brokers keep Go's default of every core even when the servers outnumber the cores
	// (the bench launchers give each one: cores.Share). With one, a garbage collection
	// of a broker holding thousands of Raft groups (48,000 goroutines at 6,000 replicas)
	// had no core to mark on but the broker's own, and stalled it for up to a second:
	// creating 2,000 topics of 5 partitions, the create p99 was 1.17 s with one core per
	// broker and 0.88 s with every core (medians of three), for 3 points more of a core
	// per idle broker (docs/benchmarks.md). QUORUMQ_GOMAXPROCS still sets it.
	brokerProcs, err := startAll(ctx, c, brokers, func(service) ([]string, error) { return nil, nil })
	if err != nil {
		return err
	}
	managerProcs, err := startAll(ctx, c, managers, func(s service) ([]string, error) {
		db, err := c.DatabaseArgs(ctx, "quorumq_"+s.name)
		if err != nil {
			return nil, fmt.Errorf("database of %s: %w", s.name, err)
		}
		return append(db, "--bootstrap-expect", strconv.Itoa(len(managers)),
			"--replication", strconv.Itoa(min(3, max(1, len(brokers))))), nil
	})
	if err != nil {
		return err
	}
	if len(managers) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, readyWait)
	defer cancel()
	all := append(append([]*Process(nil), managerProcs...), brokerProcs...)
	writer, err := waitFor(ctx, all, "the managers to elect a write manager", func(ctx context.Context) (string, bool) {
		return agreedWriteManager(ctx, c, managers)
	})
	if err != nil {
		return err
	}
	writerHTTP := managers[0].http
	for _, s := range managers {
		if s.name == writer {
			writerHTTP = s.http
		}
	}
	// Both: after a restart the metadata still says alive before a broker is back.
	reg, err := consul.New(c.ConsulHTTP(), c.consulToken, cfg.Logger)
	if err != nil {
		return err
	}
	if _, err := waitFor(ctx, all, fmt.Sprintf("%d brokers healthy in Consul and alive for the write manager", len(brokers)),
		func(ctx context.Context) (string, bool) {
			healthy, err := reg.Healthy(ctx, discovery.ServiceBroker)
			return "", err == nil && len(healthy) >= len(brokers) && aliveBrokers(ctx, c, writerHTTP) >= len(brokers)
		}); err != nil {
		return err
	}
	c.AddNote(fmt.Sprintf("REST API:    %s (any manager; the write manager is %s)", c.URL(managers[0].http, ""), writer))
	return nil
}

// startAll runs each of ss as `quorumq <kind>` with its id, data directory, addresses
// and Consul (with the token of its service), plus the arguments that args gives for it.
func startAll(ctx context.Context, c *Cluster, ss []service, args func(service) ([]string, error)) ([]*Process, error) {
	var procs []*Process
	for _, s := range ss {
		extra, err := args(s)
		if err != nil {
			return nil, err
		}
		consulArgs, err := c.ConsulArgs(ctx, s.consul)
		if err != nil {
			return nil, err
		}
		args, addrs := s.command(c.cfg.DataDir)
		p, err := c.AddProcess(s.name, s.kind, append(append(args, consulArgs...), extra...), addrs)
		if err != nil {
			return nil, err
		}
		procs = append(procs, p)
	}
	return procs, nil
}

// command is s's `quorumq <kind>` command line, before its Consul and other arguments,
// and the addresses cluster.json shows for it.
func (s service) command(dataDir string) (args []string, addrs map[string]string) {
	args = []string{s.kind, "--id", s.name, "--data-dir", filepath.Join(dataDir, s.name), "--raft", s.raft, "--http", s.http}
	addrs = map[string]string{"raft": s.raft, "http": s.http}
	if s.pprof != "" {
		args = append(args, "--pprof", s.pprof)
		addrs["pprof"] = s.pprof
	}
	return args, addrs
}

// assignPprof gives the services, in order, the loopback ports from port on for their
// Go profiles (--pprof-port); port 0 gives none.
func assignPprof(port int, ss []*service) error {
	if port == 0 {
		return nil
	}
	if highest := 65535 - max(len(ss)-1, 0); port < 1 || port > highest {
		return fmt.Errorf("--pprof-port %d is out of range: the %d managers and brokers take a port each from it on; give one from 1 to %d",
			port, len(ss), highest)
	}
	for i, s := range ss {
		s.pprof = net.JoinHostPort("127.0.0.1", strconv.Itoa(port+i))
	}
	return nil
}

func ptrs(ss []service) []*service {
	out := make([]*service, len(ss))
	for i := range ss {
		out[i] = &ss[i]
	}
	return out
}

func services(prefix, kind, consul string, n, raftPort, httpPort int) []service {
	out := make([]service, n)
	for i := range out {
		out[i] = service{name: prefix + strconv.Itoa(i+1), kind: kind, consul: consul,
			raft: net.JoinHostPort("127.0.0.1", strconv.Itoa(raftPort+i)),
			http: net.JoinHostPort("127.0.0.1", strconv.Itoa(httpPort+i))}
	}
	return out
}

// checkPorts fails, naming the flag to change, when a port is taken: a child failing to
// listen would only say so in its log.
func checkPorts(ss []service, raftFlag, httpFlag string) error {
	for _, s := range ss {
		for _, p := range []struct{ addr, flag string }{{s.raft, raftFlag}, {s.http, httpFlag}, {s.pprof, "--pprof-port"}} {
			if p.addr == "" {
				continue // no --pprof-port
			}
			if err := portFree(p.addr); err != nil {
				return fmt.Errorf("%s (for %s) is taken (%v): stop what uses it or move the range with %s", p.addr, s.name, err, p.flag)
			}
		}
	}
	return nil
}

// waitFor polls ready until it says yes, failing early when one of procs exits.
func waitFor(ctx context.Context, procs []*Process, what string, ready func(context.Context) (string, bool)) (string, error) {
	for {
		if v, ok := ready(ctx); ok {
			return v, nil
		}
		for _, p := range procs {
			select {
			case <-p.done:
				return "", fmt.Errorf("%s exited while waiting for %s; its log: %s", p.Name, what, p.Log)
			default:
			}
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("waiting for %s: %w (see the logs in %s)", what, ctx.Err(), filepath.Dir(procs[0].Log))
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// agreedWriteManager is the write manager when every manager names the same one.
func agreedWriteManager(ctx context.Context, c *Cluster, managers []service) (string, bool) {
	writer := ""
	for _, s := range managers {
		var r managerapi.ManagersReply
		if !c.getJSON(ctx, s.http, "/managers", &r) || r.WriteManager == "" || (writer != "" && r.WriteManager != writer) {
			return "", false
		}
		writer = r.WriteManager
	}
	return writer, true
}

func aliveBrokers(ctx context.Context, c *Cluster, managerHTTP string) int {
	var r managerapi.BrokersReply
	if !c.getJSON(ctx, managerHTTP, "/brokers", &r) {
		return 0
	}
	return CountAlive(r)
}

// CountAlive counts the brokers a manager's GET /brokers lists as alive.
func CountAlive(r managerapi.BrokersReply) int {
	n := 0
	for _, b := range r.Brokers {
		if b.State == string(meta.BrokerAlive) {
			n++
		}
	}
	return n
}
