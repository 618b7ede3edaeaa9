package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"

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

// consulIfSet is the Consul backend when --consul is given, else nil: the component then
// runs on the static --peers list. Giving both is refused.
func consulIfSet(consulAt string, peers []string, logger *slog.Logger) (discovery.Backend, error) {
	if consulAt == "" {
		return nil, nil
	}
	if len(peers) > 0 {
		return nil, errors.New("give --consul or --peers, not both")
	}
	b, err := consul.New(consulAt, logger)
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
