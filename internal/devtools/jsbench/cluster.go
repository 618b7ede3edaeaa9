package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/quorumq/quorumq/internal/brokerbench"
	"github.com/quorumq/quorumq/internal/cores"
	"github.com/quorumq/quorumq/internal/freeport"
)

// durability is one of JetStream's two fsync modes.
type durability struct {
	name       string
	conf       string // extra lines inside the jetstream {} block
	syncAlways bool   // what the servers must report in /varz
}

var durabilities = []durability{
	{name: "default", conf: ""}, // fsync every 2 minutes, acks before the data is on disk
	{name: "always", conf: "sync_interval: always", syncAlways: true},
}

// natsServer is one member of a 3-node JetStream cluster on loopback.
type natsServer struct {
	name       string
	clientAddr string
	monAddr    string
	cmd        *exec.Cmd
	exited     chan struct{}
}

func (s *natsServer) url() string { return "nats://" + s.clientAddr }

// cpu sums the CPU time the cluster's servers have used so far.
func (c *cluster) cpu() time.Duration {
	var total time.Duration
	for _, s := range c.servers {
		if d, err := brokerbench.ProcessCPU(s.cmd.Process.Pid); err == nil {
			total += d
		}
	}
	return total
}

// cluster is three nats-server processes sharing a temp dir for stores and logs.
type cluster struct {
	dir     string
	servers []*natsServer
}

// startCluster starts three servers with JetStream in the given durability mode and
// waits until the JetStream meta group has a leader.
func startCluster(ctx context.Context, bin string, d durability) (*cluster, error) {
	dir, err := os.MkdirTemp("", "quorumq-jsbench-")
	if err != nil {
		return nil, err
	}
	c := &cluster{dir: dir}
	addrs, err := freeport.Addrs(9)
	if err != nil {
		c.stop()
		return nil, err
	}
	var routes []string
	for i := range 3 {
		routes = append(routes, "nats-route://"+addrs[6+i])
	}
	for i := range 3 {
		s := &natsServer{name: fmt.Sprintf("n%d", i+1), clientAddr: addrs[i], monAddr: addrs[3+i], exited: make(chan struct{})}
		conf := filepath.Join(dir, s.name+".conf")
		text := fmt.Sprintf(`server_name: %s
listen: %q
http: %q
jetstream {
  store_dir: %q
  %s
}
cluster {
  name: quorumq-bench
  listen: %q
  routes: [%s]
}
`, s.name, s.clientAddr, s.monAddr, filepath.Join(dir, s.name), d.conf, addrs[6+i], strings.Join(routes, ", "))
		if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
			c.stop()
			return nil, err
		}
		if err := s.start(bin, conf, filepath.Join(dir, s.name+".log")); err != nil {
			c.stop()
			return nil, err
		}
		c.servers = append(c.servers, s)
	}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := c.waitMetaLeader(wctx); err != nil {
		c.stop()
		return nil, fmt.Errorf("jetstream cluster did not form (logs in %s): %w", dir, err)
	}
	if err := c.checkDurability(ctx, d); err != nil {
		c.stop()
		return nil, err
	}
	return c, nil
}

// checkDurability makes sure the servers run in the mode being measured: a config key
// nats-server ignored would silently compare against the wrong mode.
func (c *cluster) checkDurability(ctx context.Context, d durability) error {
	for _, s := range c.servers {
		var v struct {
			JetStream struct {
				Config struct {
					SyncAlways bool `json:"sync_always"`
				} `json:"config"`
			} `json:"jetstream"`
		}
		if err := getJSON(ctx, "http://"+s.monAddr+"/varz", &v); err != nil {
			return fmt.Errorf("%s /varz: %w", s.name, err)
		}
		if v.JetStream.Config.SyncAlways != d.syncAlways {
			return fmt.Errorf("%s reports sync_always=%v, want %v", s.name, v.JetStream.Config.SyncAlways, d.syncAlways)
		}
	}
	return nil
}

func (s *natsServer) start(bin, conf, logPath string) error {
	out, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer out.Close()
	s.cmd = exec.Command(bin, "-c", conf)
	// The same core share as quorumq's brokers get in this bench (cores.BrokerArgs).
	s.cmd.Env = append(os.Environ(), cores.GoEnv(3)...)
	s.cmd.Stdout, s.cmd.Stderr = out, out
	// Pdeathsig: an interrupted bench must not leave servers behind.
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := s.cmd.Start(); err != nil {
		return err
	}
	go func() { s.cmd.Wait(); close(s.exited) }()
	return nil
}

// jsz is the part of the monitoring endpoint's /jsz reply that tells whether the
// JetStream meta group has elected a leader.
type jsz struct {
	Meta *struct {
		Leader string `json:"leader"`
	} `json:"meta_cluster"`
}

func (c *cluster) waitMetaLeader(ctx context.Context) error {
	for {
		ready := 0
		for _, s := range c.servers {
			select {
			case <-s.exited:
				return fmt.Errorf("%s exited", s.name)
			default:
			}
			var z jsz
			if getJSON(ctx, "http://"+s.monAddr+"/jsz", &z) == nil && z.Meta != nil && z.Meta.Leader != "" {
				ready++
			}
		}
		if ready == len(c.servers) {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func getJSON(ctx context.Context, url string, v any) error {
	body, err := brokerbench.Get(ctx, url)
	if err != nil {
		return err
	}
	defer body.Close()
	return json.NewDecoder(body).Decode(v)
}

// server returns the member with the given server name.
func (c *cluster) server(name string) (*natsServer, bool) {
	for _, s := range c.servers {
		if s.name == name {
			return s, true
		}
	}
	return nil, false
}

func (c *cluster) urls() string {
	var u []string
	for _, s := range c.servers {
		u = append(u, s.url())
	}
	return strings.Join(u, ",")
}

// stop terminates the servers (SIGKILL after 10 s) and removes their stores.
func (c *cluster) stop() {
	for _, s := range c.servers {
		s.cmd.Process.Signal(syscall.SIGTERM)
	}
	for _, s := range c.servers {
		select {
		case <-s.exited:
		case <-time.After(10 * time.Second):
			s.cmd.Process.Kill()
			<-s.exited
		}
	}
	os.RemoveAll(c.dir)
}
