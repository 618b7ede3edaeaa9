package secure

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"slices"
)

// Node is a process's cluster credentials: its certificate and the CA that signed every
// peer's.
type Node struct {
	Identity Identity
	cert     tls.Certificate
	pool     *x509.CertPool
}

// LoadNode reads the CA certificate and the node's certificate and key.
func LoadNode(caPath, certPath, keyPath string) (*Node, error) {
	pool, err := LoadPool(caPath)
	if err != nil {
		return nil, err
	}
	cert, err := tls.LoadX509KeyPair(certPath, keyPath)
	if err != nil {
		return nil, fmt.Errorf("secure: node certificate: %w", err)
	}
	id, err := IdentityOf(cert.Leaf)
	if err != nil {
		return nil, fmt.Errorf("secure: node certificate %s: %w", certPath, err)
	}
	if _, err := cert.Leaf.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return nil, fmt.Errorf("secure: node certificate %s is not signed by the CA %s: %w", certPath, caPath, err)
	}
	return &Node{Identity: id, cert: cert, pool: pool}, nil
}

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
// fails the handshake.
func (n *Node) ServerConfig(auth tls.ClientAuthType) *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{n.cert},
		ClientCAs:    n.pool,
		ClientAuth:   auth,
	}
}

// ClientConfig presents the node's certificate and accepts a server whose certificate
// the CA signed for one of roles (any role when none are given). Host names are not
// checked: peers are dialed at whatever address discovery gave (an IP, a container
// name), and what identifies a peer is the role/id the CA signed.
func (n *Node) ClientConfig(roles ...string) *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{n.cert},
		RootCAs:      n.pool,
		// Verification happens in VerifyConnection, without the host name.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if err := verifyChain(n.pool, cs.PeerCertificates, x509.ExtKeyUsageServerAuth); err != nil {
				return err
			}
			if id, ok := PeerIdentity(cs); len(roles) > 0 && (!ok || !slices.Contains(roles, id.Role)) {
				return fmt.Errorf("secure: server certificate names %q, want a %v", cs.PeerCertificates[0].Subject.CommonName, roles)
			}
			return nil
		},
	}
}

// Pool is the CA pool, for clients that check host names (the public API's).
func (n *Node) Pool() *x509.CertPool { return n.pool }

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

// PublicConfig serves the public API (managers, ATMs) with certFile/keyFile: clients
// authenticate with tokens, not certificates.
func PublicConfig(certFile, keyFile string) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("secure: TLS certificate of the public API: %w", err)
	}
	return &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{cert}}, nil
}
