package secure

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"slices"
)

// Node is a process's cluster credentials: its certificate and the CA bundle that
// signed every peer's. Both are read again when their files change (see reloader), so
// a certificate is renewed, or the cluster moves to a new CA, without a restart; the
// TLS configurations below ask for the current ones at each handshake.
type Node struct {
	Identity Identity
	creds    *reloader[nodeCreds]
}

type nodeCreds struct {
	cert tls.Certificate
	pool *x509.CertPool
}

// LoadNode reads the CA certificate (a bundle of several during a CA rotation) and the
// node's certificate and key.
func LoadNode(caPath, certPath, keyPath string) (*Node, error) {
	n := &Node{}
	load := func() (nodeCreds, error) {
		c, id, err := loadNodeCreds(caPath, certPath, keyPath)
		switch {
		case err != nil:
		case n.Identity == Identity{}: // the first load, before anyone reads it
			n.Identity = id
		case id != n.Identity:
			// The peers know this process by its identity: a new one takes a restart.
			err = fmt.Errorf("secure: %s now names %s, not %s", certPath, id, n.Identity)
		}
		return c, err
	}
	var err error
	if n.creds, err = newReloader("node certificate "+certPath, []string{caPath, certPath, keyPath}, load); err != nil {
		return nil, err
	}
	return n, nil
}

func loadNodeCreds(caPath, certPath, keyPath string) (nodeCreds, Identity, error) {
	pool, err := LoadPool(caPath)
	if err != nil {
		return nodeCreds{}, Identity{}, err
	}
	cert, err := tls.LoadX509KeyPair(certPath, keyPath)
	if err != nil {
		return nodeCreds{}, Identity{}, fmt.Errorf("secure: node certificate: %w", err)
	}
	id, err := IdentityOf(cert.Leaf)
	if err != nil {
		return nodeCreds{}, Identity{}, fmt.Errorf("secure: node certificate %s: %w", certPath, err)
	}
	if _, err := cert.Leaf.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return nodeCreds{}, Identity{}, fmt.Errorf("secure: node certificate %s is not signed by the CA %s: %w", certPath, caPath, err)
	}
	return nodeCreds{cert: cert, pool: pool}, id, nil
}

// Reload reads the node's files again now (SIGHUP); on failure the node keeps the
// credentials it has.
func (n *Node) Reload() error { return n.creds.Reload() }

// Serial is the serial number of the node's current certificate.
func (n *Node) Serial() string { return n.creds.get().cert.Leaf.SerialNumber.String() }

// LoadPool reads a CA certificate file into a pool.
func LoadPool(caPath string) (*x509.CertPool, error) {
	b, err := os.ReadFile(caPath)
	if err != nil {
		return nil, fmt.Errorf("secure: CA certificate: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("secure: %s holds no PEM certificate", caPath)
	}
	return pool, nil
}

// ServerConfig serves with the node's certificate and verifies client certificates
// against the CA. auth is tls.RequireAndVerifyClientCert where only cluster members may
// connect (Raft ports), tls.VerifyClientCertIfGiven where token holders and Consul's
// health checks connect too (the brokers' HTTP API): a certificate from another CA still
// fails the handshake. Each handshake takes the credentials current then.
func (n *Node) ServerConfig(auth tls.ClientAuthType) *tls.Config {
	current := func() *tls.Config {
		c := n.creds.get()
		return &tls.Config{
			MinVersion:   tls.VersionTLS13,
			Certificates: []tls.Certificate{c.cert},
			ClientCAs:    c.pool,
			ClientAuth:   auth,
		}
	}
	cfg := current()
	cfg.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) { return current(), nil }
	return cfg
}

// ClientConfig presents the node's certificate and accepts a server whose certificate
// the CA signed for one of roles (any role when none are given). Host names are not
// checked: peers are dialed at whatever address discovery gave (an IP, a container
// name), and what identifies a peer is the role/id the CA signed. Each handshake takes
// the credentials current then.
func (n *Node) ClientConfig(roles ...string) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			c := n.creds.get()
			return &c.cert, nil
		},
		// Verification happens in VerifyConnection, without the host name.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if err := verifyChain(n.creds.get().pool, cs.PeerCertificates, x509.ExtKeyUsageServerAuth); err != nil {
				return err
			}
			if id, ok := PeerIdentity(cs); len(roles) > 0 && (!ok || !slices.Contains(roles, id.Role)) {
				return fmt.Errorf("secure: server certificate names %q, want a %v", cs.PeerCertificates[0].Subject.CommonName, roles)
			}
			return nil
		},
	}
}

// Pool is the CA pool now, for clients that check host names (the public API's).
func (n *Node) Pool() *x509.CertPool { return n.creds.get().pool }

func verifyChain(pool *x509.CertPool, certs []*x509.Certificate, usage x509.ExtKeyUsage) error {
	if len(certs) == 0 {
		return errors.New("secure: peer sent no certificate")
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	_, err := certs[0].Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{usage}})
	if err != nil {
		return fmt.Errorf("secure: peer certificate not signed by the cluster CA: %w", err)
	}
	return nil
}

// PeerIdentity is the identity of a TLS connection's verified peer certificate; false
// when the peer presented none.
func PeerIdentity(cs tls.ConnectionState) (Identity, bool) {
	if len(cs.PeerCertificates) == 0 {
		return Identity{}, false
	}
	id, err := IdentityOf(cs.PeerCertificates[0])
	return id, err == nil
}

// PublicCert is the public API's own certificate (managers, ATMs: --tls-cert,
// --tls-key), read again when its files change. Clients authenticate with tokens, not
// certificates.
type PublicCert struct {
	r *reloader[tls.Certificate]
}

// LoadPublicCert reads the public API's certificate and key.
func LoadPublicCert(certFile, keyFile string) (*PublicCert, error) {
	r, err := newReloader("public API certificate "+certFile, []string{certFile, keyFile}, func() (tls.Certificate, error) {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return cert, fmt.Errorf("secure: TLS certificate of the public API: %w", err)
		}
		return cert, nil
	})
	if err != nil {
		return nil, err
	}
	return &PublicCert{r: r}, nil
}

// Reload reads the files again now (SIGHUP).
func (p *PublicCert) Reload() error { return p.r.Reload() }

// TLS serves with the certificate current at each handshake.
func (p *PublicCert) TLS() *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS13, GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
		c := p.r.get()
		return &c, nil
	}}
}
