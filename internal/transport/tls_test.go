package transport

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/quorumq/quorumq/internal/secure"
)

// tlsMux starts a Mux with the TLS of a process of identity id, whose certificate the
// CA in caDir signed.
func tlsMux(t *testing.T, caDir, id string) *Mux {
	t.Helper()
	return startMux(t, tlsConfig(t, caDir, id))
}

// tlsConfig is the Config of tlsMux, for tests that change more of it.
func tlsConfig(t *testing.T, caDir, id string) Config {
	t.Helper()
	ident, err := secure.ParseIdentity(id)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := secure.CreateNode(caDir, ident, nil, dir); err != nil {
		t.Fatal(err)
	}
	node, err := secure.LoadNode(filepath.Join(caDir, secure.CAFile), filepath.Join(dir, secure.NodeFile), filepath.Join(dir, secure.NodeKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{BindAddr: "127.0.0.1:0", Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Timeout: 5 * time.Second}
	cfg.ServerTLS, cfg.ClientTLS, cfg.PeerID = (&secure.Config{Node: node}).Raft()
	return cfg
}

func startMux(t testing.TB, cfg Config) *Mux {
	t.Helper()
	m, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

func newCA(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := secure.CreateCA(dir); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestTLSAdmitsOnlyClusterPeers: a Raft port with TLS serves peers holding a
// certificate of the cluster CA for the same role, and nobody else, whatever method
// they call (election's apply, addvoter, remove and join go through Call).
func TestTLSAdmitsOnlyClusterPeers(t *testing.T) {
	ca := newCA(t)
	server := tlsMux(t, ca, "broker/b1")
	reached := make(chan string, 16)
	for _, method := range []string{"apply", "addvoter", "remove", "join"} {
		server.Handle("g", method, func(ctx context.Context, _ []byte) ([]byte, error) {
			reached <- PeerID(ctx)
			return []byte("ok"), nil
		})
	}
	for _, tc := range []struct {
		name   string
		client *Mux
		ok     bool
	}{
		{"cluster peer", tlsMux(t, ca, "broker/b2"), true},
		{"no TLS", newMux(t), false},
		{"certificate of another CA", tlsMux(t, newCA(t), "broker/b2"), false},
		{"certificate of another role", tlsMux(t, ca, "manager/m1"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, method := range []string{"apply", "addvoter", "remove", "join"} {
				ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
				resp, err := tc.client.Call(ctx, server.Addr(), "g", method, []byte("x"))
				cancel()
				if tc.ok != (err == nil) {
					t.Fatalf("%s: %q, %v; want success=%v", method, resp, err, tc.ok)
				}
			}
		})
	}
	close(reached)
	var got []string
	for id := range reached {
		got = append(got, id)
	}
	if len(got) != 4 || got[0] != "b2" {
		t.Fatalf("handlers ran for %q, want 4 calls of b2", got)
	}
}

// TestTLSForgedSenderDropsConnection: a cluster peer that sends a raft request under
// another server's ID loses its connection, and raft never sees the request.
func TestTLSForgedSenderDropsConnection(t *testing.T) {
	ca := newCA(t)
	server, client := tlsMux(t, ca, "broker/b1"), tlsMux(t, ca, "broker/b2")
	sg, cg := openGroup(t, server, "g"), openGroup(t, client, "g")
	answer(t, sg)
	hdr := func(id string) raft.RPCHeader { return raft.RPCHeader{ID: []byte(id), Addr: []byte(client.Addr())} }
	var resp raft.RequestVoteResponse
	if err := cg.RequestVote("b1", server.Addr(), &raft.RequestVoteRequest{RPCHeader: hdr("b2"), Term: 1}, &resp); err != nil {
		t.Fatalf("a vote request under the peer's own ID: %v", err)
	}
	err := cg.RequestVote("b1", server.Addr(), &raft.RequestVoteRequest{RPCHeader: hdr("b3"), Term: 2}, &resp)
	if err == nil {
		t.Fatal("a vote request under another server's ID was answered")
	}
	if errors.Is(err, ErrUnknownGroup) {
		t.Fatalf("unexpected error %v", err)
	}
}
