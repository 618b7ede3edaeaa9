// Package secure holds quorumq's trust boundary: a cluster CA and the node certificates
// it signs (mutual TLS between processes: Raft ports, the brokers' HTTP API, manager →
// broker calls), and bearer tokens with roles for the public APIs (managers, ATMs).
//
// A node certificate names its holder in its Common Name as "role/id" (broker/b1,
// manager/m1, atm/atm1, client/admin): the identity a process checks is the one the CA
// signed, never the one a peer claims in a request.
package secure

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// File names inside a CA directory and a node's certificate directory.
const (
	CAFile      = "ca.pem"
	CAKeyFile   = "ca-key.pem"
	NodeFile    = "node.pem"
	NodeKeyFile = "node-key.pem"
)

// Roles of node certificates.
const (
	RoleBroker  = "broker"
	RoleManager = "manager"
	RoleATM     = "atm"
	RoleClient  = "client" // a tool or SDK that talks to brokers directly (bench)
)

// Lifetimes: the CA outlives the nodes it signs; both are long because rotating them is
// an operator's decision, not something a dev cluster should hit.
const (
	caLifetime   = 10 * 365 * 24 * time.Hour
	nodeLifetime = 5 * 365 * 24 * time.Hour
)

// Identity is who a certificate names.
type Identity struct {
	Role string
	ID   string
}

func (i Identity) String() string { return i.Role + "/" + i.ID }

// ParseIdentity reads "role/id".
func ParseIdentity(s string) (Identity, error) {
	role, id, ok := strings.Cut(s, "/")
	if !ok || role == "" || id == "" || strings.ContainsAny(id, "/ ") {
		return Identity{}, fmt.Errorf("%q is not role/id (e.g. broker/b1)", s)
	}
	return Identity{Role: role, ID: id}, nil
}

// IdentityOf is the identity a certificate's Common Name carries.
func IdentityOf(cert *x509.Certificate) (Identity, error) {
	return ParseIdentity(cert.Subject.CommonName)
}

// CreateCA writes a new CA (ECDSA P-256) into dir as ca.pem and ca-key.pem. It refuses
// to overwrite an existing CA: every certificate it signed would stop being trusted.
func CreateCA(dir string) error {
	if _, err := os.Stat(filepath.Join(dir, CAFile)); err == nil {
		return fmt.Errorf("secure: %s already exists", filepath.Join(dir, CAFile))
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	tmpl, err := template("quorumq CA", caLifetime)
	if err != nil {
		return err
	}
	tmpl.IsCA = true
	tmpl.BasicConstraintsValid = true
	tmpl.MaxPathLenZero = true
	tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	return writePair(dir, CAFile, CAKeyFile, der, key)
}

// CreateNode writes a certificate for id signed by the CA in caDir into outDir as
// node.pem and node-key.pem. hosts become its SANs (127.0.0.1 and localhost are always
// added) so that a client that checks host names (curl --cacert) accepts it too.
func CreateNode(caDir string, id Identity, hosts []string, outDir string) error {
	caCert, caKey, err := loadCA(caDir)
	if err != nil {
		return err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	tmpl, err := template(id.String(), nodeLifetime)
	if err != nil {
		return err
	}
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	// Every process is both: it serves its ports and dials its peers'.
	tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	for _, h := range append([]string{"127.0.0.1", "localhost"}, hosts...) {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if h != "" {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return err
	}
	return writePair(outDir, NodeFile, NodeKeyFile, der, key)
}

func template(cn string, life time.Duration) (*x509.Certificate, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, err
	}
	now := time.Now()
	return &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: cn, Organization: []string{"quorumq"}},
		NotBefore:    now.Add(-time.Hour), // tolerate clocks a little behind
		NotAfter:     now.Add(life),
	}, nil
}

func writePair(dir, certName, keyName string, der []byte, key *ecdsa.PrivateKey) error {
	kb, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	if err := writePEM(filepath.Join(dir, keyName), "PRIVATE KEY", kb, 0o600); err != nil {
		return err
	}
	return writePEM(filepath.Join(dir, certName), "CERTIFICATE", der, 0o644)
}

// writePEM replaces path through a rename: a running process that reloads its
// certificate (rotation in place) never reads half a file.
func writePEM(path, typ string, der []byte, mode os.FileMode) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), mode); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func loadCA(dir string) (*x509.Certificate, any, error) {
	certPEM, err := os.ReadFile(filepath.Join(dir, CAFile))
	if err != nil {
		return nil, nil, fmt.Errorf("secure: CA: %w (create one with quorumq cert create-ca)", err)
	}
	keyPEM, err := os.ReadFile(filepath.Join(dir, CAKeyFile))
	if err != nil {
		return nil, nil, fmt.Errorf("secure: CA key: %w", err)
	}
	cb, _ := pem.Decode(certPEM)
	kb, _ := pem.Decode(keyPEM)
	if cb == nil || kb == nil {
		return nil, nil, errors.New("secure: CA files are not PEM")
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("secure: CA certificate: %w", err)
	}
	key, err := x509.ParsePKCS8PrivateKey(kb.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("secure: CA key: %w", err)
	}
	return cert, key, nil
}
