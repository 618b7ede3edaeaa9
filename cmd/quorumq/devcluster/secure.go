package devcluster

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"net/http"
	"slices"
	"time"

	"github.com/quorumq/quorumq/internal/secure"
)

// secure opens the data directory's credentials (a CA, certificates, a tokens file and
// an admin token, made on the first run) unless the cluster runs --insecure, and
// returns the client the supervisor polls the processes with.
func (c *Cluster) secure() (*http.Client, error) {
	client := &http.Client{Timeout: 2 * time.Second}
	if c.cfg.Insecure {
		c.cfg.Logger.Warn("dev: running --insecure: plain TCP and HTTP, no authentication")
		return client, nil
	}
	var err error
	if c.creds, err = secure.OpenStore(c.cfg.DataDir); err != nil {
		return nil, err
	}
	pool, err := secure.LoadPool(c.creds.CAPath())
	if err != nil {
		return nil, err
	}
	client.Transport = &http.Transport{TLSClientConfig: &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: pool}}
	return client, nil
}

// serverFlags secure a child that is a manager, broker or ATM called name.
func (c *Cluster) serverFlags(kind, name string) ([]string, error) {
	if !slices.Contains([]string{secure.RoleManager, secure.RoleBroker, secure.RoleATM}, kind) {
		return nil, nil
	}
	if c.creds == nil {
		return []string{"--insecure"}, nil
	}
	return c.creds.ServerFlags(secure.Identity{Role: kind, ID: name})
}

// URL is the URL of path on a process's HTTP API at addr.
func (c *Cluster) URL(addr, path string) string {
	if c.creds == nil {
		return "http://" + addr + path
	}
	return "https://" + addr + path
}

// getJSON reports whether GET addr+path (with the admin token) answered 200 with JSON
// for out.
func (c *Cluster) getJSON(ctx context.Context, addr, path string, out any) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.URL(addr, path), nil)
	if err != nil {
		return false
	}
	if c.creds != nil {
		req.Header.Set("Authorization", "Bearer "+c.creds.AdminToken())
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	return resp.StatusCode == http.StatusOK && json.NewDecoder(resp.Body).Decode(out) == nil
}
