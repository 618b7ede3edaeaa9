package raftmetrics_test

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/gofiber/fiber/v2"
	"github.com/hashicorp/raft"

	"github.com/quorumq/quorumq/election/electiontest"
	"github.com/quorumq/quorumq/internal/raftmetrics"
)

// serve mounts m on a Fiber app that reuses its buffers (not Immutable), with one route
// answering every method and one that fails, and returns the app's address.
func serve(t *testing.T, m *raftmetrics.Metrics) string {
	t.Helper()
	app := fiber.New(fiber.Config{DisableStartupMessage: true})
	m.Mount(app, func(c *fiber.Ctx) error { return c.Next() })
	app.All("/things/:name", func(c *fiber.Ctx) error { return c.SendString("ok") })
	app.Get("/broken", func(c *fiber.Ctx) error { return fiber.NewError(fiber.StatusTeapot, "no") })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go app.Listener(ln)
	t.Cleanup(func() { app.Shutdown() })
	return ln.Addr().String()
}

func scrape(t *testing.T, addr string) string {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// TestRequestsOnOneConnection sends requests of different methods over one keep-alive
// connection, where Fiber reuses its buffers between requests: each keeps its own
// series, with the method it had and the route pattern, not the path.
func TestRequestsOnOneConnection(t *testing.T) {
	m := raftmetrics.New(raftmetrics.Config{Prefix: "test", Members: func() []raftmetrics.Member { return nil },
		OpLabel: "route", Op: raftmetrics.RoutePattern})
	addr := serve(t, m)
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	r := bufio.NewReader(conn)
	for _, line := range []string{"GET /things/a", "PUT /things/bb", "DELETE /things/ccc", "GET /broken", "PUT /things/d"} {
		if _, err := io.WriteString(conn, line+" HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(r, nil)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	got := scrape(t, addr)
	for _, want := range []string{
		`test_http_requests_total{code="200",method="GET",route="/things/:name"} 1`,
		`test_http_requests_total{code="200",method="PUT",route="/things/:name"} 2`,
		`test_http_requests_total{code="200",method="DELETE",route="/things/:name"} 1`,
		`test_http_requests_total{code="418",method="GET",route="/broken"} 1`,
		`test_http_request_duration_seconds_count{method="PUT",route="/things/:name"} 2`,
		"test_raft_groups 0",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("missing %s in\n%s", want, got)
		}
	}
	if strings.Contains(got, "test_is_leader") {
		t.Errorf("Raft series reported before the member exists:\n%s", got)
	}
}

func TestRaftState(t *testing.T) {
	tests := []struct {
		name    string
		members int
		leader  bool
	}{
		{"leader", 1, true},
		{"follower", 3, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g := electiontest.NewCluster(t, tc.members, "g", electiontest.NewRecorder)
			node := g.Leader(t)
			if !tc.leader {
				for _, n := range g.Nodes {
					if n != node {
						node = n
						break
					}
				}
			}
			m := raftmetrics.New(raftmetrics.Config{Prefix: "test", Members: raftmetrics.One(func() raftmetrics.Member { return node }),
				OpLabel: "route", Op: raftmetrics.RoutePattern})
			got := scrape(t, serve(t, m))
			state, leader := strings.ToLower(raft.Follower.String()), "0"
			if tc.leader {
				state, leader = strings.ToLower(raft.Leader.String()), "1"
			}
			for _, want := range []string{`test_is_leader{group="g"} ` + leader, `test_raft_state{group="g",state="` + state + `"} 1`,
				`test_applied_index{group="g"} `, `test_raft_term{group="g"} `, `test_raft_commit_index{group="g"} `,
				`test_raft_last_log_index{group="g"} `, "test_raft_groups 1"} {
				if !strings.Contains(got, want) {
					t.Errorf("missing %q in\n%s", want, got)
				}
			}
		})
	}
}
