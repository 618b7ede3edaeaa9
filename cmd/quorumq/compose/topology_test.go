package compose

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/quorumq/quorumq/cmd/quorumq/proctest"
	"github.com/quorumq/quorumq/cmd/quorumq/scenario"
	"github.com/quorumq/quorumq/consul"
	"github.com/quorumq/quorumq/discovery"
	"github.com/quorumq/quorumq/internal/devtools/consulagent"
	"github.com/quorumq/quorumq/internal/devtools/consultest"
	"github.com/quorumq/quorumq/internal/devtools/pgserver"
	"github.com/quorumq/quorumq/manager/managerapi"
)

// hostMap turns a compose service's command into one that runs on this machine: each
// quorumq service's name becomes its own loopback address (Linux routes all of 127/8 to
// lo), keeping the compose port when it is free there; consul:8500 and postgres:5432
// become the test's agent and server; a volume's mount point becomes a directory.
type hostMap struct {
	t      *testing.T
	ips    map[string]string // quorumq service → 127.0.1.N
	others map[string]string // consul/postgres service:port → test address
	addrs  map[string]string // quorumq service:port → loopback address, once chosen
}

func newHostMap(t *testing.T, quorumq []string, others map[string]string) *hostMap {
	m := &hostMap{t: t, ips: map[string]string{}, others: others, addrs: map[string]string{}}
	for i, name := range quorumq {
		m.ips[name] = fmt.Sprintf("127.0.1.%d", i+1)
	}
	return m
}

func (m *hostMap) addr(hostport string) (string, bool) {
	if a, ok := m.others[hostport]; ok {
		return a, true
	}
	if a, ok := m.addrs[hostport]; ok {
		return a, true
	}
	host, port, err := net.SplitHostPort(hostport)
	ip, ok := m.ips[host]
	if err != nil || !ok {
		return "", false
	}
	a := net.JoinHostPort(ip, port)
	l, err := net.Listen("tcp", a)
	if err != nil {
		// Taken (by something on 0.0.0.0, say): the same address on a free port.
		if l, err = net.Listen("tcp", net.JoinHostPort(ip, "0")); err != nil {
			m.t.Fatalf("no free port on %s: %v", ip, err)
		}
		m.t.Logf("%s: %s is taken, using %s", hostport, a, l.Addr())
		a = l.Addr().String()
	}
	l.Close()
	m.addrs[hostport] = a
	return a, true
}

// command maps every argument of s's command; mounts are the service's volume
// targets with the directory each stands for.
func (m *hostMap) command(name string, s service, mounts map[string]string) []string {
	var out []string
	for _, a := range s.Command {
		if dir, ok := mounts[a]; ok {
			a = dir
		} else if u, err := url.Parse(a); err == nil && u.Scheme != "" && u.Host != "" {
			mapped, ok := m.addr(u.Host)
			if !ok {
				m.t.Fatalf("%s: %s names a host the test does not run", name, a)
			}
			u.Host = mapped
			a = u.String()
		} else if mapped, ok := m.addr(a); ok {
			a = mapped
		} else if _, _, err := net.SplitHostPort(a); err == nil && !strings.Contains(a, "=") {
			m.t.Fatalf("%s: %s names a host the test does not run", name, a)
		}
		out = append(out, a)
	}
	return out
}

// TestComposeTopology runs docker-compose.yml's quorumq services as real processes with
// their exact commands, only the container-specific parts mapped (see hostMap), then
// uses the cluster as the file's header describes: a topic, a produce with the CLI,
// a consume with the SDK; and checks what Consul and GET /managers report.
func TestComposeTopology(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Consul, PostgreSQL and eight quorumq processes")
	}
	began := time.Now()
	elapsed := func() time.Duration { return time.Since(began).Round(100 * time.Millisecond) }
	cf := loadCompose(t)
	agent := consultest.Start(t)
	pg := pgserver.StartT(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	by := cf.quorumqServices()
	names := append(slices.Clone(by["manager"]), by["broker"]...)
	hosts := newHostMap(t, names, map[string]string{
		"consul:8500":   agent.HTTPAddr(),
		"postgres:5432": pg.Addr(),
	})

	// The processes' certificates name the loopback addresses they run on here, as in
	// compose they name the service (their host name), for clients that check it.
	for _, ip := range hosts.ips {
		proctest.Credentials(t).AddHosts(ip)
	}
	disc := consultest.Backend(t, agent, consulagent.Reader)
	c := &scenario.Cluster{ConsulAddr: agent.HTTPAddr(), Discovery: disc,
		ConsulTokenFile: consultest.TokenFile(t, agent, consulagent.Reader)}
	httpOf := map[string]string{} // --id → mapped --http
	for _, name := range names {
		s := cf.Services[name]
		mounts := map[string]string{}
		for _, v := range s.Volumes {
			mounts[strings.Split(v, ":")[1]] = t.TempDir()
		}
		args := hosts.command(name, s, mounts)
		// The secrets are proctest's (it adds the certificates, since the command names
		// none) and the test server's password: checkSecrets checks the file's own.
		// The Consul token comes as in the file, through CONSUL_HTTP_TOKEN_FILE: a token
		// of the test agent for the process's service.
		service := map[string]string{"manager": discovery.ServiceManager, "broker": discovery.ServiceBroker}[s.subcommand()]
		tokenFile, err := agent.TokenFile(ctx, service)
		if err != nil {
			t.Fatal(err)
		}
		env := []string{"CONSUL_HTTP_TOKEN_FILE=" + tokenFile}
		if s.subcommand() == "manager" {
			env = append(env, "QUORUMQ_POSTGRES_PASSWORD_FILE="+pg.PasswordFile())
		}
		proctest.StartOpts(t, proctest.Opts{Name: name, Args: args, Env: env})
		id, _ := s.flag("id")
		composeHTTP, _ := s.flag("http")
		n := &scenario.Node{ID: id}
		n.HTTP, _ = hosts.addr(composeHTTP)
		httpOf[id] = n.HTTP
		if s.subcommand() == "manager" {
			c.Managers = append(c.Managers, n)
		} else {
			c.Brokers = append(c.Brokers, n)
		}
	}
	for service, nodes := range map[string][]*scenario.Node{discovery.ServiceManager: c.Managers, discovery.ServiceBroker: c.Brokers} {
		waitPassing(ctx, t, disc, service, nodes)
	}
	t.Logf("%v: Consul lists %d managers and %d brokers passing", elapsed(), len(c.Managers), len(c.Brokers))
	wm, err := c.WriteManager(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range c.Managers {
		waitWriteManager(ctx, t, n, wm.ID, len(c.Managers))
	}
	t.Logf("%v: every manager's GET /managers names %s the write manager", elapsed(), wm.ID)

	const topic = "orders"
	if err := c.CreateTopic(ctx, c.Client(t), topic, 3); err != nil {
		t.Fatal(err)
	}
	var managers []string
	for _, n := range c.Managers {
		managers = append(managers, n.HTTP)
	}
	sent := []string{"hello", "from", "compose"}
	p := proctest.Start(t, "produce", "produce", "--topic", topic, "--managers", strings.Join(managers, ","))
	if _, err := p.Stdin.Write([]byte(strings.Join(sent, "\n") + "\n")); err != nil {
		t.Fatal(err)
	}
	p.Stdin.Close()
	if err := p.Wait(); err != nil {
		t.Fatalf("quorumq produce: %v\n%s", err, p.Output())
	}
	cs, err := c.Client(t).NewConsumer(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for len(got) < len(sent) {
		msgs, err := cs.Poll(ctx, 10)
		if err != nil {
			t.Fatalf("consume after %v: %v", got, err)
		}
		for _, m := range msgs {
			got = append(got, m.Value)
		}
		if len(msgs) == 0 {
			time.Sleep(100 * time.Millisecond)
		}
	}
	slices.Sort(got)
	if want := slices.Sorted(slices.Values(sent)); !slices.Equal(got, want) {
		t.Errorf("consumed %v, produced %v", got, want)
	}
	t.Logf("%v: topic %s created, %d messages produced with the CLI and consumed with the SDK", elapsed(), topic, len(sent))
}

// waitPassing waits until Consul lists exactly nodes as passing instances of service,
// each at the HTTP address its command gave.
func waitPassing(ctx context.Context, t *testing.T, disc *consul.Backend, service string, nodes []*scenario.Node) {
	t.Helper()
	want := map[string]string{}
	for _, n := range nodes {
		want[n.ID] = n.HTTP
	}
	var last []discovery.Instance
	for {
		ins, err := disc.Healthy(ctx, service)
		if err == nil {
			last = ins
			got := map[string]string{}
			for _, in := range ins {
				got[in.ID] = in.Addr
			}
			if fmt.Sprint(got) == fmt.Sprint(want) {
				return
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("Consul: passing %s instances %+v, want %v", service, last, want)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// waitWriteManager waits until n's GET /managers names writeManager among members.
func waitWriteManager(ctx context.Context, t *testing.T, n *scenario.Node, writeManager string, members int) {
	t.Helper()
	var last string
	client := proctest.HTTPClient(t)
	for {
		var r managerapi.ManagersReply
		resp, err := client.Get(proctest.URL(n.HTTP, "/managers"))
		if err == nil {
			err = json.NewDecoder(resp.Body).Decode(&r)
			resp.Body.Close()
			last = strconv.Itoa(resp.StatusCode) + fmt.Sprintf(" %+v", r)
			if err == nil && r.WriteManager == writeManager && len(r.Managers) == members {
				return
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s: GET /managers: %s (error %v), want write manager %s of %d", n.ID, last, err, writeManager, members)
		case <-time.After(200 * time.Millisecond):
		}
	}
}
