package secure

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
)

// Store is a directory of credentials made without an operator: `quorumq dev`, `make
// atm` and the test harnesses keep the CA, node certificates (made on first use), the
// tokens file and one admin token there, and find them again on the next run.
type Store struct {
	Dir string

	mu    sync.Mutex
	token string
	hosts []string // AddHosts
}

// AddHosts names more hosts (SANs) in the certificates made from now on: a test that
// runs processes on other loopback addresses than 127.0.0.1.
func (s *Store) AddHosts(hosts ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hosts = append(s.hosts, hosts...)
}

const adminTokenFile = "admin-token"

// OpenStore creates dir's CA and admin token unless they exist.
func OpenStore(dir string) (*Store, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	s := &Store{Dir: abs}
	if _, err := os.Stat(s.CAPath()); errors.Is(err, os.ErrNotExist) {
		if err := CreateCA(abs); err != nil {
			return nil, err
		}
	}
	tokenPath := filepath.Join(abs, adminTokenFile)
	b, err := os.ReadFile(tokenPath)
	switch {
	case err == nil:
		s.token = strings.TrimSpace(string(b))
	case errors.Is(err, os.ErrNotExist):
		if s.token, err = AddToken(s.TokensPath(), []string{RoleAdmin}, nil, "admin (made by quorumq dev)"); err != nil {
			return nil, err
		}
		if err := os.WriteFile(tokenPath, []byte(s.token+"\n"), 0o600); err != nil {
			return nil, err
		}
	default:
		return nil, err
	}
	return s, nil
}

// CAPath is the CA certificate clients trust.
func (s *Store) CAPath() string { return filepath.Join(s.Dir, CAFile) }

// TokensPath is the tokens file the servers check.
func (s *Store) TokensPath() string { return filepath.Join(s.Dir, "tokens.json") }

// AdminToken is the store's admin token.
func (s *Store) AdminToken() string { return s.token }

// nodeDir makes id's certificate unless it exists and returns its directory.
func (s *Store) nodeDir(id Identity) (string, error) {
	dir := filepath.Join(s.Dir, "certs", id.Role+"-"+id.ID)
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, err := os.Stat(filepath.Join(dir, NodeFile)); err == nil {
		return dir, nil
	}
	// The ID as a host name too: in compose each process is reached at its service
	// name (b1:8080), and the SDK checks host names.
	if err := CreateNode(s.Dir, id, append([]string{id.ID}, s.hosts...), dir); err != nil {
		return "", fmt.Errorf("secure: certificate of %s: %w", id, err)
	}
	return dir, nil
}

// ServerFlags are the quorumq flags that secure the server id: --ca, --cert, --key
// and --tokens.
func (s *Store) ServerFlags(id Identity) ([]string, error) {
	dir, err := s.nodeDir(id)
	if err != nil {
		return nil, err
	}
	return []string{"--ca", s.CAPath(), "--cert", filepath.Join(dir, NodeFile),
		"--key", filepath.Join(dir, NodeKeyFile), "--tokens", s.TokensPath()}, nil
}

// Node loads id's credentials (made on first use), for a process that calls the
// cluster as a member: a bench, a test.
func (s *Store) Node(id Identity) (*Node, error) {
	dir, err := s.nodeDir(id)
	if err != nil {
		return nil, err
	}
	return LoadNode(s.CAPath(), filepath.Join(dir, NodeFile), filepath.Join(dir, NodeKeyFile))
}
