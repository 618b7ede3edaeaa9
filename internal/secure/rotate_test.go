package secure

import (
	"crypto/tls"
	"errors"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// node is a certificate in a directory of its own, with the CA file it trusts (a copy,
// so that a test can turn it into a bundle).
type node struct {
	id         Identity
	dir, caDir string // caDir: the CA that signs its next certificate
	caFile     string
	n          *Node
}

func newRotNode(t *testing.T, caDir, id string) *node {
	t.Helper()
	ident, err := ParseIdentity(id)
	if err != nil {
		t.Fatal(err)
	}
	nd := &node{id: ident, dir: t.TempDir(), caDir: caDir}
	nd.caFile = filepath.Join(nd.dir, "trust.pem")
	writeFile(t, nd.caFile, readFile(t, filepath.Join(caDir, CAFile)))
	nd.issue(t)
	if nd.n, err = LoadNode(nd.caFile, filepath.Join(nd.dir, NodeFile), filepath.Join(nd.dir, NodeKeyFile)); err != nil {
		t.Fatal(err)
	}
	return nd
}

// issue writes a new certificate for the node, signed by its caDir, over the old one.
func (nd *node) issue(t *testing.T) {
	t.Helper()
	if err := CreateNode(nd.caDir, nd.id, nil, nd.dir); err != nil {
		t.Fatal(err)
	}
}

func newCA(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := CreateCA(dir); err != nil {
		t.Fatal(err)
	}
	return dir
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func writeFile(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// handshake connects client to a new listener of server (mutual TLS, as on a Raft
// port) and returns the serials each side saw of the other.
func handshake(server, client *Node) (serverSerial, clientSerial string, err error) {
	ln, err := tls.Listen("tcp", "127.0.0.1:0", server.ServerConfig(tls.RequireAndVerifyClientCert))
	if err != nil {
		return "", "", err
	}
	defer ln.Close()
	seen := make(chan string, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			seen <- ""
			return
		}
		defer c.Close()
		tc := c.(*tls.Conn)
		if tc.Handshake() != nil || len(tc.ConnectionState().PeerCertificates) == 0 {
			seen <- ""
			return
		}
		seen <- tc.ConnectionState().PeerCertificates[0].SerialNumber.String()
	}()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", ln.Addr().String(), client.ClientConfig())
	if err != nil {
		<-seen
		return "", "", err
	}
	defer c.Close()
	// TLS 1.3: the server checks the client's certificate after the client's handshake
	// returns; a read makes the client wait for the server's verdict.
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, _ = c.Read(make([]byte, 1))
	clientSerial = <-seen
	if clientSerial == "" {
		return "", "", errors.New("the server refused the client's certificate")
	}
	return c.ConnectionState().PeerCertificates[0].SerialNumber.String(), clientSerial, nil
}

// TestCertificateRotation: a node's renewed certificate is used by new connections
// without a restart (its files changed: seen within a second; Reload: at once), and the
// cluster moves to a new CA through a bundle of both. A reload that would break the
// node (a key that does not match, another identity, a CA that did not sign its
// certificate) keeps the credentials it has.
func TestCertificateRotation(t *testing.T) {
	caA := newCA(t)
	srv, cli := newRotNode(t, caA, "broker/b1"), newRotNode(t, caA, "broker/b2")
	mustHandshake := func(what string) (string, string) {
		t.Helper()
		s, c, err := handshake(srv.n, cli.n)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if s != srv.n.Serial() || c != cli.n.Serial() {
			t.Fatalf("%s: the peers saw serials %s and %s, the nodes hold %s and %s", what, s, c, srv.n.Serial(), cli.n.Serial())
		}
		return s, c
	}
	before, _ := mustHandshake("before rotation")

	// Renewed in place: new connections carry the new certificate once the file change
	// is noticed, with no call at all.
	srv.issue(t)
	deadline := time.Now().Add(30 * time.Second)
	for srv.n.Serial() == before {
		if time.Now().After(deadline) {
			t.Fatal("the renewed certificate was not picked up")
		}
		time.Sleep(100 * time.Millisecond)
	}
	renewed, _ := mustHandshake("after renewal")
	if renewed == before {
		t.Fatal("the server still presents the old certificate")
	}

	// Broken rotations keep what works.
	stranger := newRotNode(t, caA, "broker/b9")
	certOnly := t.TempDir()
	if err := CreateNode(caA, srv.id, nil, certOnly); err != nil {
		t.Fatal(err)
	}
	caB := newCA(t)
	for _, c := range []struct {
		name    string
		breakIt func()
	}{
		{"certificate without its key", func() {
			writeFile(t, filepath.Join(srv.dir, NodeFile), readFile(t, filepath.Join(certOnly, NodeFile)))
		}},
		{"another identity", func() {
			writeFile(t, filepath.Join(srv.dir, NodeFile), readFile(t, filepath.Join(stranger.dir, NodeFile)))
			writeFile(t, filepath.Join(srv.dir, NodeKeyFile), readFile(t, filepath.Join(stranger.dir, NodeKeyFile)))
		}},
		{"a CA that did not sign it", func() { writeFile(t, srv.caFile, readFile(t, filepath.Join(caB, CAFile))) }},
	} {
		good := map[string][]byte{}
		for _, f := range []string{NodeFile, NodeKeyFile, "trust.pem"} {
			good[f] = readFile(t, filepath.Join(srv.dir, f))
		}
		c.breakIt()
		if err := srv.n.Reload(); err == nil {
			t.Fatalf("%s: Reload accepted it", c.name)
		}
		if s, _ := mustHandshake(c.name); s != renewed {
			t.Fatalf("%s: serial %s, want the one in use, %s", c.name, s, renewed)
		}
		for f, b := range good {
			writeFile(t, filepath.Join(srv.dir, f), b)
		}
	}

	// A new CA: both trust the bundle, then each gets a certificate of the new CA, then
	// the old CA goes. Every step keeps the two talking.
	bundle := append(readFile(t, filepath.Join(caA, CAFile)), readFile(t, filepath.Join(caB, CAFile))...)
	for _, nd := range []*node{srv, cli} {
		writeFile(t, nd.caFile, bundle)
		if err := nd.n.Reload(); err != nil {
			t.Fatal(err)
		}
	}
	mustHandshake("both trust both CAs")
	for _, nd := range []*node{srv, cli} {
		nd.caDir = caB
		nd.issue(t)
		if err := nd.n.Reload(); err != nil {
			t.Fatal(err)
		}
		mustHandshake(nd.id.String() + " has a certificate of the new CA")
	}
	for _, nd := range []*node{srv, cli} {
		writeFile(t, nd.caFile, readFile(t, filepath.Join(caB, CAFile)))
		if err := nd.n.Reload(); err != nil {
			t.Fatal(err)
		}
	}
	mustHandshake("only the new CA is trusted")
	if _, _, err := handshake(srv.n, stranger.n); err == nil {
		t.Fatal("a certificate of the retired CA still gets in")
	}
}
