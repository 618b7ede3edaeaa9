package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"

	"github.com/spf13/pflag"

	"github.com/quorumq/quorumq/consul"
	"github.com/quorumq/quorumq/discovery"
	"github.com/quorumq/quorumq/election"
)

// newLogger is the structured logger of a long-running component, at --log-level.
func newLogger(w io.Writer, level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l})), nil
}

// dataDirFor is --data-dir, or .quorumq/<id> when it was not given.
func dataDirFor(dir, id string) string {
	if dir != "" {
		return dir
	}
	return filepath.Join(".quorumq", id)
}

// consulFlags locate a Consul agent and the ACL token to call it with. The token is
// best given by file or environment: a flag's value shows in ps.
type consulFlags struct {
	addr, token, tokenFile string
}

func (f *consulFlags) register(fs *pflag.FlagSet, addr, usage string) {
	fs.StringVar(&f.addr, "consul", addr, usage)
	fs.StringVar(&f.token, "consul-token", "", "Consul ACL token (visible in ps: prefer the env or --consul-token-file)")
	fs.StringVar(&f.tokenFile, "consul-token-file", "", "file holding the Consul ACL token (quorumq dev writes them in <data-dir>/consul/acl)")
}

// backend is the Consul backend at --consul with the flags' token ("" when neither
// flag is given: the agent's anonymous token, or CONSUL_HTTP_TOKEN).
func (f *consulFlags) backend(logger *slog.Logger) (*consul.Backend, error) {
	token := f.token
	if f.tokenFile != "" {
		if token != "" {
			return nil, errors.New("give --consul-token or --consul-token-file, not both")
		}
		var err error
		if token, err = consul.ReadTokenFile(f.tokenFile); err != nil {
			return nil, fmt.Errorf("--consul-token-file: %w", err)
		}
	}
	return consul.New(f.addr, token, logger)
}

// ifSet is the Consul backend when --consul is given, else nil: the component then
// runs on the static --peers list. Giving both is refused.
func (f *consulFlags) ifSet(peers []string, logger *slog.Logger) (discovery.Backend, error) {
	if f.addr == "" {
		return nil, nil
	}
	if len(peers) > 0 {
		return nil, errors.New("give --consul or --peers, not both")
	}
	b, err := f.backend(logger)
	if err != nil {
		return nil, err
	}
	return b, nil
}

// parsePeers reads --peers id=host:port,...
func parsePeers(peers []string) ([]election.Peer, error) {
	out := make([]election.Peer, 0, len(peers))
	for _, p := range peers {
		id, addr, ok := strings.Cut(p, "=")
		if !ok || id == "" || addr == "" {
			return nil, fmt.Errorf("--peers: %q is not id=host:port", p)
		}
		out = append(out, election.Peer{ID: id, Addr: addr})
	}
	return out, nil
}
