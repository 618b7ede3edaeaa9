package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/pflag"

	"github.com/quorumq/quorumq/clientlib"
	"github.com/quorumq/quorumq/internal/secure"
)

// securityFlags are the flags of every server (manager, broker, atm): the cluster
// certificate (mutual TLS between processes), the tokens file (the HTTP APIs), the
// public API's own certificate, or --insecure.
type securityFlags struct {
	ca, cert, key, tokens string
	tlsCert, tlsKey       string
	insecure              bool
}

func (s *securityFlags) register(f *pflag.FlagSet, public bool) {
	f.StringVar(&s.ca, "ca", "", "the cluster CA certificate (quorumq cert create-ca)")
	f.StringVar(&s.cert, "cert", "", "this node's certificate, signed by the CA for role/id (quorumq cert create-node)")
	f.StringVar(&s.key, "key", "", "the key of --cert")
	f.StringVar(&s.tokens, "tokens", "", "tokens file the HTTP API checks bearer tokens against (quorumq token create)")
	if public {
		f.StringVar(&s.tlsCert, "tls-cert", "", "certificate of the public HTTP API (default: --cert)")
		f.StringVar(&s.tlsKey, "tls-key", "", "key of --tls-cert")
	}
	f.BoolVar(&s.insecure, "insecure", false, "no TLS and no tokens: anyone who reaches a port controls the cluster")
}

// config loads the security of the process role/id; nil with --insecure, which must be
// asked for: without certificates the process does not start. Without
// tokens, only cluster certificates get through (enough for a broker, whose clients
// are the managers; the SDK's direct produce then goes through the managers).
// The certificates are read again when their files change and on SIGHUP.
func (s *securityFlags) config(ctx context.Context, role, id string, needTokens bool, log *slog.Logger) (*secure.Config, error) {
	if s.insecure {
		log.Warn("running --insecure: plain TCP and HTTP, no authentication; anyone who reaches the ports controls the cluster")
		return nil, nil
	}
	if s.ca == "" || s.cert == "" || s.key == "" {
		// Secure by default: running open takes a decision (CockroachDB's rule).
		return nil, errors.New("give --ca, --cert and --key (quorumq cert create-ca, quorumq cert create-node), or --insecure to run without TLS and tokens")
	}
	node, err := secure.LoadNode(s.ca, s.cert, s.key)
	if err != nil {
		return nil, err
	}
	if want := (secure.Identity{Role: role, ID: id}); node.Identity != want {
		return nil, fmt.Errorf("--cert names %s, but this process is %s (quorumq cert create-node --name %s)", node.Identity, want, want)
	}
	cfg := &secure.Config{Node: node}
	if s.tokens != "" {
		if cfg.Tokens, err = secure.LoadTokens(s.tokens); err != nil {
			return nil, err
		}
	} else if needTokens {
		return nil, errors.New("--tokens is required with --cert: the HTTP API admits clients by token (quorumq token create)")
	}
	if (s.tlsCert == "") != (s.tlsKey == "") {
		return nil, errors.New("give --tls-cert and --tls-key together")
	}
	if s.tlsCert != "" {
		if cfg.Public, err = secure.LoadPublicCert(s.tlsCert, s.tlsKey); err != nil {
			return nil, err
		}
	}
	cfg.SetLogger(log)
	go reloadOnHUP(ctx, cfg, log)
	return cfg, nil
}

// reloadOnHUP reloads the process's certificates on SIGHUP, at once (they are also
// reloaded within a second of their files changing); without it SIGHUP would end the
// process.
func reloadOnHUP(ctx context.Context, cfg *secure.Config, log *slog.Logger) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			if secure.ReloadAll(cfg.Reloaders()) == nil {
				log.Info("SIGHUP: certificates reloaded", "serial", cfg.Node.Serial())
			}
		}
	}
}

// clientCredentials are --token and --ca of the commands that talk to the managers,
// falling back to what `quorumq dev` recorded in --data-dir's cluster.json.
type clientCredentials struct {
	token, ca, dataDir string
}

func (c *clientCredentials) register(f *pflag.FlagSet) {
	f.StringVar(&c.token, "token", "", "bearer token (default: quorumq dev's admin token from --data-dir)")
	f.StringVar(&c.ca, "ca", "", "CA certificate the servers' TLS certificates are signed by; https when set (default: quorumq dev's)")
	f.StringVar(&c.dataDir, "data-dir", clientlib.DefaultDataDir, "quorumq dev's data directory, whose cluster.json holds admin_token and ca")
}

func (c *clientCredentials) option() clientlib.Option {
	return clientlib.WithCredentials(c.token, c.ca, c.dataDir)
}

// withPasswordFile puts the password in file (its first line) into dsn, so that the
// password is in neither the command line nor the compose file.
func withPasswordFile(dsn, file string) (string, error) {
	if file == "" {
		return dsn, nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("--postgres-password-file: %w", err)
	}
	u, err := url.Parse(dsn)
	if err != nil || u.User == nil {
		return "", fmt.Errorf("--postgres: %q is not a postgres://user@host/db URL", dsn)
	}
	pass, _, _ := strings.Cut(string(b), "\n")
	u.User = url.UserPassword(u.User.Username(), strings.TrimSpace(pass))
	return u.String(), nil
}
