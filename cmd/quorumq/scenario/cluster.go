// Package scenario is the seed's test scenario run end to end on real processes
// (go test ./cmd/quorumq/scenario/), plus what it needs: a one-call cluster of real
// quorumq processes on Consul and PostgreSQL, and the logs its clients write and the
// check that compares them.
package scenario

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/quorumq/quorumq/clientlib"
	"github.com/quorumq/quorumq/cmd/quorumq/proctest"
	"github.com/quorumq/quorumq/consul"
	"github.com/quorumq/quorumq/discovery"
	"github.com/quorumq/quorumq/internal/devtools/consulagent"
	"github.com/quorumq/quorumq/internal/devtools/consultest"
	"github.com/quorumq/quorumq/internal/devtools/pgserver"
)

// Node is one quorumq process of a Cluster; Restart runs it again on the same data
// directory and addresses, as an operator restarting a crashed machine would.
type Node struct {
	ID      string
	HTTP    string // host:port of its HTTP API
	Raft    string // host:port of its raft transport
	DataDir string
	args    []string
	env     []string
	proc    *proctest.Proc
	runs    int
}

func (n *Node) start(t testing.TB) {
	n.runs++
	n.proc = proctest.StartOpts(t, proctest.Opts{Name: fmt.Sprintf("%s#%d", n.ID, n.runs), Args: n.args, Env: n.env})
}

// Kill ends the process with SIGKILL and waits until it is gone.
func (n *Node) Kill() { n.proc.Kill() }

// Restart starts the process again (after Kill).
func (n *Node) Restart(t testing.TB) { n.start(t) }

// Proc is the current run of the process.
func (n *Node) Proc() *proctest.Proc { return n.proc }

// Options sizes a Cluster.
type Options struct {
	Brokers  int // default 5
	Managers int // default 3
	// BrokerGrace is how long a broker may be critical before the managers declare it
	// dead and move its replicas (default 2s, short so tests see re-replication).
	BrokerGrace time.Duration
	// Env, if set, gives each process (by ID) extra environment variables.
	Env func(id string) []string
}

// Cluster is Consul, PostgreSQL (one database per manager), and brokers and managers
// as real `quorumq` processes, all stopped when the test ends.
type Cluster struct {
	ConsulAddr string // host:port of the Consul agent's HTTP API
	// ConsulTokenFile holds a read-only token of the agent (which denies by default),
	// for client commands: --consul-token-file.
	ConsulTokenFile string
	Discovery       *consul.Backend
	Brokers         []*Node
	Managers        []*Node
	opts            Options
	agent           *consulagent.Agent
}

// Start runs a cluster. It returns once the processes are started, not once they are
// ready: CreateTopic waits for that.
func Start(t testing.TB, o Options) *Cluster {
	t.Helper()
	if o.Brokers == 0 {
		o.Brokers = 5
	}
	if o.Managers == 0 {
		o.Managers = 3
	}
	if o.BrokerGrace == 0 {
		o.BrokerGrace = 2 * time.Second
	}
	agent := consultest.Start(t)
	pg := pgserver.StartT(t)
	c := &Cluster{ConsulAddr: agent.HTTPAddr(), Discovery: consultest.Backend(t, agent, consulagent.Reader),
		ConsulTokenFile: consultest.TokenFile(t, agent, consulagent.Reader), opts: o, agent: agent}
	for range o.Brokers {
		c.AddBroker(t)
	}
	for i := 1; i <= o.Managers; i++ {
		n := o.node(t, fmt.Sprintf("m%d", i))
		n.args = []string{"manager", "--id", n.ID, "--data-dir", t.TempDir(),
			"--raft", n.Raft, "--http", n.HTTP,
			"--bootstrap-expect", fmt.Sprint(o.Managers), "--postgres", pg.DSN("quorumq_" + n.ID),
			"--broker-grace", o.BrokerGrace.String()}
		n.args = append(n.args, consultest.Flags(t, agent, discovery.ServiceManager)...)
		n.start(t)
		c.Managers = append(c.Managers, n)
	}
	return c
}

// AddBroker starts one more broker, b<n+1> for a cluster of n brokers.
func (c *Cluster) AddBroker(t testing.TB) *Node {
	n := c.opts.node(t, fmt.Sprintf("b%d", len(c.Brokers)+1))
	n.DataDir = t.TempDir()
	n.args = []string{"broker", "--id", n.ID, "--data-dir", n.DataDir,
		"--raft", n.Raft, "--http", n.HTTP}
	n.args = append(n.args, consultest.Flags(t, c.agent, discovery.ServiceBroker)...)
	n.start(t)
	c.Brokers = append(c.Brokers, n)
	return n
}

// node is a process on free ports, not started yet.
func (o Options) node(t testing.TB, id string) *Node {
	n := &Node{ID: id, HTTP: proctest.FreeAddr(t), Raft: proctest.FreeAddr(t)}
	if o.Env != nil {
		n.env = o.Env(id)
	}
	return n
}

// defaultReplication is the managers' --replication default.
const defaultReplication = 3

// ConsulFlags point a client command (topic, produce, bench) at the cluster's Consul
// with the read-only token.
func (c *Cluster) ConsulFlags() []string {
	return []string{"--consul", c.ConsulAddr, "--consul-token-file", c.ConsulTokenFile}
}

// Broker is the broker with that id, nil if none.
func (c *Cluster) Broker(id string) *Node { return find(c.Brokers, id) }

// Manager is the manager with that id, nil if none.
func (c *Cluster) Manager(id string) *Node { return find(c.Managers, id) }

func find(nodes []*Node, id string) *Node {
	for _, n := range nodes {
		if n.ID == id {
			return n
		}
	}
	return nil
}

// Client is an SDK client of the secured cluster (the harness's admin token and CA)
// finding the managers through Consul, retrying for up to 90s
// (long enough to ride out an election plus a dead broker's replacement on a busy CI box).
func (c *Cluster) Client(t testing.TB, opts ...clientlib.Option) *clientlib.Client {
	t.Helper()
	cl, err := clientlib.New(append([]clientlib.Option{clientlib.WithResolver(c.Discovery),
		clientlib.WithRetryTimeout(90 * time.Second),
		clientlib.WithToken(proctest.Token(t)), clientlib.WithCA(proctest.Credentials(t).CAPath())}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return cl
}

// WriteManager is the manager Consul tags as the leader, waiting up to a minute for
// one (an election may be under way).
func (c *Cluster) WriteManager(ctx context.Context) (*Node, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for {
		ins, _ := c.Discovery.Healthy(ctx, discovery.ServiceManager)
		for _, in := range ins {
			if in.HasTag(discovery.TagLeader) {
				if n := c.Manager(in.ID); n != nil {
					return n, nil
				}
			}
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("no write manager tagged in Consul: %w", ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// CreateTopic creates a topic, retrying while the cluster is still forming (the
// managers place partitions only once they know enough brokers).
func (c *Cluster) CreateTopic(ctx context.Context, cl *clientlib.Client, name string, partitions int) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	// A topic takes the default replication (3) from the brokers the write manager knows
	// alive when it is created, fewer if fewer are after the managers' own wait
	// (brokerWait, 5 s), which a busy machine starting the cluster can outlast: the seed
	// scenario's topic once got one replica per partition, all on b1, and the
	// partitions had two members when b1 was killed.
	for need := min(defaultReplication, len(c.Brokers)); ; {
		bs, _, err := cl.Admin().Brokers(ctx)
		alive := 0
		for _, b := range bs {
			if b.State == "alive" {
				alive++
			}
		}
		if err == nil && alive >= need {
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("create topic %s: %d of %d brokers alive: %w (last error: %v)", name, alive, need, ctx.Err(), err)
		case <-time.After(200 * time.Millisecond):
		}
	}
	for {
		actx, acancel := context.WithTimeout(ctx, 10*time.Second)
		err := cl.Admin().CreateTopic(actx, name, partitions)
		acancel()
		if err == nil || errors.Is(err, clientlib.ErrTopicExists) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("create topic %s: %w (last error: %v)", name, ctx.Err(), err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}
