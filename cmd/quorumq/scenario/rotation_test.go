package scenario

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/quorumq/quorumq/broker/brokerapi"
	"github.com/quorumq/quorumq/cmd/quorumq/proctest"
	"github.com/quorumq/quorumq/internal/brokerclient"
	"github.com/quorumq/quorumq/internal/secure"
)

// TestCertificateRotationWhileRunning: three brokers hold a partition; b1's
// certificate is renewed in place twice while they run, once by rewriting the files
// (noticed within a second) and once followed by SIGHUP. After each, new connections
// to b1's HTTP API and Raft port get the new certificate, the partition keeps taking
// writes on all three, and b1 is the same process.
func TestCertificateRotationWhileRunning(t *testing.T) {
	store := proctest.Credentials(t)
	certDir := t.TempDir()
	b1 := secure.Identity{Role: secure.RoleBroker, ID: "b1"}
	issue := func() string {
		t.Helper()
		if err := secure.CreateNode(store.Dir, b1, nil, certDir); err != nil {
			t.Fatal(err)
		}
		pair, err := tls.LoadX509KeyPair(filepath.Join(certDir, secure.NodeFile), filepath.Join(certDir, secure.NodeKeyFile))
		if err != nil {
			t.Fatal(err)
		}
		return pair.Leaf.SerialNumber.String()
	}
	serial := issue()

	var peers []brokerapi.Peer
	var proc *proctest.Proc
	for _, id := range []string{"b1", "b2", "b3"} {
		p := brokerapi.Peer{ID: id, RaftAddr: proctest.FreeAddr(t), HTTPAddr: proctest.FreeAddr(t)}
		args := []string{"broker", "--id", id, "--data-dir", t.TempDir(), "--raft", p.RaftAddr, "--http", p.HTTPAddr}
		if id == b1.ID {
			args = append(args, "--ca", store.CAPath(), "--cert", filepath.Join(certDir, secure.NodeFile),
				"--key", filepath.Join(certDir, secure.NodeKeyFile), "--tokens", store.TokensPath(), "--log-level", "info")
		}
		bp := proctest.Start(t, id, args...)
		bp.WaitOutput(t, "listening", time.Minute)
		if id == b1.ID {
			proc = bp
		}
		peers = append(peers, p)
	}
	cl := brokerclient.New(peers[0].HTTPAddr, peers[1].HTTPAddr, peers[2].HTTPAddr)
	cl.Secure(proctest.ClientTLS(t), proctest.Token(t))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := cl.CreatePartition(ctx, "t", 0, peers); err != nil {
		t.Fatal(err)
	}
	probe, err := store.Node(secure.Identity{Role: secure.RoleBroker, ID: "probe"})
	if err != nil {
		t.Fatal(err)
	}
	pid := proc.Pid()
	sent := 0
	check := func(what string) {
		t.Helper()
		for _, addr := range []string{peers[0].HTTPAddr, peers[0].RaftAddr} {
			eventually(t, what+": "+addr+" presents serial "+serial, func() error {
				got, err := presentedSerial(probe, addr)
				if err == nil && got != serial {
					err = fmt.Errorf("serial %s", got)
				}
				return err
			})
		}
		sent++
		msg := fmt.Sprintf("m%d", sent)
		eventually(t, what+": produce "+msg, func() error {
			_, err := cl.Produce(ctx, "t", 0, "", 0, []string{msg})
			return err
		})
		// Every replica, b1 included, applies it: b1's Raft links work with either side's
		// new certificate.
		for _, p := range peers {
			eventually(t, what+": "+p.ID+" has "+msg, func() error {
				st, err := cl.Status(ctx, p.HTTPAddr, "t", 0)
				if err == nil && st.Next < uint64(sent) {
					err = fmt.Errorf("next offset %d", st.Next)
				}
				return err
			})
		}
		if proc.Pid() != pid {
			t.Fatalf("%s: b1 was restarted", what)
		}
		select {
		case <-proc.Done():
			t.Fatalf("%s: b1 exited:\n%s", what, proc.Output())
		default:
		}
	}
	check("before rotation")
	serial = issue()
	check("files rewritten")
	if !strings.Contains(proc.Output(), "secure: reloaded") {
		t.Errorf("b1 did not log the reload of its rewritten files:\n%s", proc.Output())
	}
	serial = issue()
	if err := proc.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	check("SIGHUP")
	if !strings.Contains(proc.Output(), "SIGHUP: certificates reloaded") {
		t.Errorf("b1 did not log the reload:\n%s", proc.Output())
	}
}

// presentedSerial is the serial of the certificate the TLS server at addr presents
// to a new connection from a cluster member.
func presentedSerial(n *secure.Node, addr string) (string, error) {
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", addr, n.ClientConfig())
	if err != nil {
		return "", err
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].SerialNumber.String(), nil
}

// eventually retries fn for up to a minute (a loaded machine is slow, never wrong).
func eventually(t *testing.T, what string, fn func() error) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		err := fn()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
