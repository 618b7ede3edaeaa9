package clientlib

import (
	"cmp"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// DefaultDataDir is where `quorumq dev` keeps its state by default.
const DefaultDataDir = ".quorumq"

// DevCredentials reads the admin token and the CA path that `quorumq dev` records in
// <dataDir>/cluster.json ("admin_token", "ca"); empty strings when there is no such
// file or it records none (an --insecure cluster).
func DevCredentials(dataDir string) (token, ca string, err error) {
	if dataDir == "" {
		dataDir = DefaultDataDir
	}
	b, err := os.ReadFile(filepath.Join(dataDir, "cluster.json"))
	if errors.Is(err, os.ErrNotExist) {
		return "", "", nil
	}
	if err != nil {
		return "", "", err
	}
	var st struct {
		AdminToken string `json:"admin_token"`
		CA         string `json:"ca"`
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return "", "", fmt.Errorf("quorumq: %s: %w", filepath.Join(dataDir, "cluster.json"), err)
	}
	return st.AdminToken, st.CA, nil
}

// WithCA speaks https to the managers and brokers, trusting certificates signed by the
// CA in the PEM file at path (a secured cluster's ca.pem).
func WithCA(path string) Option {
	return func(c *Client) {
		b, err := os.ReadFile(path)
		pool := x509.NewCertPool()
		if err == nil && !pool.AppendCertsFromPEM(b) {
			err = fmt.Errorf("%s holds no PEM certificate", path)
		}
		if err != nil {
			c.optErr = errors.Join(c.optErr, fmt.Errorf("quorumq: CA: %w", err))
			return
		}
		WithTLS(&tls.Config{MinVersion: tls.VersionTLS13, RootCAs: pool})(c)
	}
}

// ResolveCredentials finds a secured cluster's token and CA path the way the CLI
// does: token and ca when given, else QUORUMQ_TOKEN and QUORUMQ_CA, else what `quorumq
// dev` recorded in <dataDir>/cluster.json ("" is .quorumq). Empty when none is found.
func ResolveCredentials(token, ca, dataDir string) (string, string, error) {
	token, ca = cmp.Or(token, os.Getenv("QUORUMQ_TOKEN")), cmp.Or(ca, os.Getenv("QUORUMQ_CA"))
	if token != "" && ca != "" {
		return token, ca, nil
	}
	devToken, devCA, err := DevCredentials(dataDir)
	return cmp.Or(token, devToken), cmp.Or(ca, devCA), err
}

// WithCredentials uses the token and CA that ResolveCredentials finds; none found
// leaves the client on plain http without a token.
func WithCredentials(token, ca, dataDir string) Option {
	return func(c *Client) {
		token, ca, err := ResolveCredentials(token, ca, dataDir)
		if err != nil {
			c.optErr = errors.Join(c.optErr, err)
			return
		}
		if token != "" {
			WithToken(token)(c)
		}
		if ca != "" {
			WithCA(ca)(c)
		}
	}
}
