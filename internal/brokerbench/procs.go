package brokerbench

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/quorumq/quorumq/broker/brokerapi"
	"github.com/quorumq/quorumq/internal/cores"
	"github.com/quorumq/quorumq/internal/freeport"
	"github.com/quorumq/quorumq/internal/secure"
)

// proc is a broker process the bench started.
type proc struct {
	peer  brokerapi.Peer
	args  []string
	log   string
	cmd   *exec.Cmd
	pprof string // host:port of its net/http/pprof server, "" when not profiled
}

// startBrokers starts n brokers of binary with data under dir, serving Go profiles when
// pprof is set; secured with a CA made there unless insecure, in which case the
// returned client TLS is nil. Brokers that outnumber the cores get one each
// (cores.BrokerArgs).
func startBrokers(ctx context.Context, binary, dir string, n int, pprof, insecure bool) ([]*proc, *tls.Config, error) {
	var (
		store     *secure.Store
		clientTLS *tls.Config
	)
	if !insecure {
		var err error
		if store, err = secure.OpenStore(filepath.Join(dir, "credentials")); err != nil {
			return nil, nil, err
		}
		node, err := store.Node(secure.Identity{Role: secure.RoleClient, ID: "bench"})
		if err != nil {
			return nil, nil, err
		}
		clientTLS = node.ClientConfig(secure.RoleBroker)
	}
	var ps []*proc
	for i := range n {
		id := fmt.Sprintf("b%d", i+1)
		p := &proc{peer: brokerapi.Peer{ID: id, RaftAddr: freeAddr(), HTTPAddr: freeAddr()}, log: filepath.Join(dir, id+".log")}
		p.args = []string{"broker", "--id", id, "--data-dir", filepath.Join(dir, id), "--raft", p.peer.RaftAddr, "--http", p.peer.HTTPAddr, "--insecure"}
		if store != nil {
			flags, err := store.ServerFlags(secure.Identity{Role: secure.RoleBroker, ID: id})
			if err != nil {
				stopAll(ps)
				return nil, nil, err
			}
			p.args = append(p.args[:len(p.args)-1], flags...)
		}
		p.args = append(p.args, cores.BrokerArgs(n)...)
		if pprof {
			p.pprof = freeAddr()
			p.args = append(p.args, "--pprof", p.pprof)
		}
		ps = append(ps, p)
		if err := p.start(ctx, binary); err != nil {
			stopAll(ps)
			return nil, nil, err
		}
	}
	return ps, clientTLS, nil
}

func (p *proc) start(ctx context.Context, binary string) error {
	out, err := os.OpenFile(p.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer out.Close()
	p.cmd = exec.Command(binary, p.args...)
	p.cmd.Stdout, p.cmd.Stderr = out, out
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		return err
	}
	go p.cmd.Wait()
	// Up once its HTTP port accepts (plain or TLS: either way the listener is open).
	for ctx.Err() == nil {
		if nc, err := net.Dial("tcp", p.peer.HTTPAddr); err == nil {
			nc.Close()
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return ctx.Err()
}

func (p *proc) kill() {
	if p.cmd != nil && p.cmd.Process != nil {
		p.cmd.Process.Kill()
		for p.cmd.ProcessState == nil && syscall.Kill(p.cmd.Process.Pid, 0) == nil {
			time.Sleep(5 * time.Millisecond)
		}
	}
}

func stopAll(ps []*proc) {
	for _, p := range ps {
		if p.cmd != nil && p.cmd.Process != nil {
			p.cmd.Process.Signal(syscall.SIGTERM)
		}
	}
	for _, p := range ps {
		if p.cmd == nil || p.cmd.Process == nil {
			continue
		}
		deadline := time.Now().Add(10 * time.Second)
		for syscall.Kill(p.cmd.Process.Pid, 0) == nil && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		p.kill()
	}
}

func freeAddr() string {
	addr, err := freeport.Addr()
	if err != nil {
		panic(err)
	}
	return addr
}

// usage is a process's RSS (total and anonymous, bytes) and CPU time so far.
type usage struct {
	rss, anon int64
	cpu       time.Duration
}

// ProcessCPU is the CPU time (user and system) process pid has used so far.
func ProcessCPU(pid int) (time.Duration, error) {
	u, err := readUsage(pid)
	return u.cpu, err
}

func readUsage(pid int) (usage, error) {
	var u usage
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return u, err
	}
	for _, line := range strings.Split(string(status), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		kb, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "VmRSS:":
			u.rss = kb << 10
		case "RssAnon:":
			u.anon = kb << 10
		}
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return u, err
	}
	// Fields after the command name (which may contain spaces): utime is the 12th, stime the 13th.
	f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+2:]))
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	u.cpu = time.Duration(ut+st) * time.Second / 100 // USER_HZ is 100 on Linux
	return u, nil
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }
