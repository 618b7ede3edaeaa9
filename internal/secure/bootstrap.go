package secure

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// Bootstrap makes, in the Store's directory, what a containerised cluster needs and
// nobody should type into a file: every node's certificate, one Consul ACL token per
// service (consul/<service>.token and .accessor, and consul/acl.hcl with the agent's
// management token), and a PostgreSQL password (postgres-password). What exists is kept,
// so running it on every start is harmless.
func (s *Store) Bootstrap(nodes []Identity, consulServices []string, postgres bool) error {
	for _, id := range nodes {
		if _, err := s.nodeDir(id); err != nil {
			return err
		}
	}
	// The Consul and PostgreSQL images read these as their own users: world-readable
	// inside the stack's private volume.
	if len(consulServices) > 0 {
		dir := filepath.Join(s.Dir, "consul")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		mgmt, err := keepSecret(filepath.Join(dir, "management.token"), uuid)
		if err != nil {
			return err
		}
		acl := fmt.Sprintf("# Made by quorumq cert init.\nacl {\n  tokens {\n    initial_management = %q\n    agent = %q\n  }\n}\n", mgmt, mgmt)
		if err := os.WriteFile(filepath.Join(dir, "acl.hcl"), []byte(acl), 0o644); err != nil {
			return err
		}
		for _, svc := range consulServices {
			for _, kind := range []string{".token", ".accessor"} {
				if _, err := keepSecret(filepath.Join(dir, svc+kind), uuid); err != nil {
					return err
				}
			}
		}
	}
	if postgres {
		if _, err := keepSecret(filepath.Join(s.Dir, "postgres-password"), randomHex); err != nil {
			return err
		}
	}
	return nil
}

// keepSecret returns the secret in path, making it with gen when the file is missing.
func keepSecret(path string, gen func() (string, error)) (string, error) {
	if b, err := os.ReadFile(path); err == nil {
		return string(b), nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", err
	}
	v, err := gen()
	if err != nil {
		return "", err
	}
	return v, os.WriteFile(path, []byte(v), 0o644)
}

// uuid is a random (version 4) UUID: Consul wants its secrets in that form.
func uuid() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:], nil
}

func randomHex() (string, error) {
	var b [24]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return hex.EncodeToString(b[:]), nil
}
