package secure

import (
	"crypto/tls"
	"fmt"
	"net"
)

// Config is one process's security. A nil *Config is --insecure: plain TCP and HTTP, no
// tokens; every method works on it.
type Config struct {
	Node   *Node       // the cluster certificate: mutual TLS with the other processes
	Tokens *Tokens     // bearer tokens of the HTTP APIs; nil refuses every token
	Public *PublicCert // certificate of the public API (managers, ATMs); nil: the node's
}

// Raft is the TLS of the process's Raft port: only processes of the same role
// (brokers with brokers, managers with managers) connect, and each speaks only as the
// raft server ID its certificate names. All nil for a nil Config.
func (c *Config) Raft() (server, client *tls.Config, peerID func(tls.ConnectionState) (string, error)) {
	if c == nil {
		return nil, nil, nil
	}
	role := c.Node.Identity.Role
	peerID = func(cs tls.ConnectionState) (string, error) {
		id, ok := PeerIdentity(cs)
		if !ok || id.Role != role {
			return "", fmt.Errorf("secure: a %s's raft port accepts only %s certificates, got %v", role, role, id)
		}
		return id.ID, nil
	}
	return c.Node.ServerConfig(tls.RequireAndVerifyClientCert), c.Node.ClientConfig(role), peerID
}

// ListenInternal wraps the listener of the brokers' HTTP API: TLS with the node
// certificate; a client certificate is verified when given (cluster members), and
// optional, since token holders (the SDK) and Consul's health checks come without one.
func (c *Config) ListenInternal(ln net.Listener) net.Listener {
	if c == nil {
		return ln
	}
	return tls.NewListener(ln, c.Node.ServerConfig(tls.VerifyClientCertIfGiven))
}

// ListenPublic wraps the listener of a public API (managers, ATMs): TLS with Public, or
// with the node certificate when no separate one was given.
func (c *Config) ListenPublic(ln net.Listener) net.Listener {
	if c == nil {
		return ln
	}
	if c.Public != nil {
		return tls.NewListener(ln, c.Public.TLS())
	}
	return tls.NewListener(ln, c.Node.ServerConfig(tls.NoClientCert))
}

// BrokerClient is the TLS of calls to the brokers' HTTP API; nil for a nil Config.
func (c *Config) BrokerClient() *tls.Config {
	if c == nil {
		return nil
	}
	return c.Node.ClientConfig(RoleBroker)
}

// Auth guards the HTTP API; trustCerts lets cluster members in by certificate alone.
func (c *Config) Auth(trustCerts bool) *Auth {
	if c == nil {
		return nil
	}
	return &Auth{Tokens: c.Tokens, TrustCerts: trustCerts}
}

// Scheme is "https", or "http" for a nil Config.
func (c *Config) Scheme() string {
	if c == nil {
		return "http"
	}
	return "https"
}
