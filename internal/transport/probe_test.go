package transport

import (
	"context"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// TestHeartbeatProbe: heartbeats that arrive in one read are answered one after
// another, except those raft must first persist a term for (the group's probe says
// so, or the group has no probe): each of those is answered on its own. A slow
// stable-store write then holds up no other group's heartbeat; when it held up the
// rest of its batch, their leaders lost their leases during mass elections.
//
// Heartbeat A goes out just before heartbeat B, in one write, so both arrive in one
// read: the server answers A ahead of B unless A is answered on its own. A's handler
// blocks until the test releases it, as raft writing a term does.
func TestHeartbeatProbe(t *testing.T) {
	inMemory := func(uint64) bool { return true }
	mustWrite := func(uint64) bool { return false }
	tests := []struct {
		name   string
		probeA func(term uint64) bool // nil: none set
		alone  bool                   // A is answered on its own, B does not wait for it
	}{
		{"a term to write is answered alone", mustWrite, true},
		{"no probe: answered alone", nil, true},
		{"both in memory: answered in line", inMemory, false},
	}
	const termA, termB = 5, 2
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
			server := startMux(t, Config{BindAddr: "127.0.0.1:0", Logger: quiet, Timeout: patientTimeout})
			// A long coalescing delay: the client holds A's heartbeat until B's joins it.
			client := startMux(t, Config{BindAddr: "127.0.0.1:0", Logger: quiet, Timeout: patientTimeout, CoalesceDelay: 500 * time.Millisecond})

			release := make(chan struct{})
			var once sync.Once
			free := func() { once.Do(func() { close(release) }) }
			t.Cleanup(free) // before the Muxes close: a blocked handler would hold up Close

			var mu sync.Mutex
			var served []string          // heartbeat handler calls, in order
			asked := map[string]uint64{} // the term each probe was asked about
			enteredA := make(chan struct{})
			serve := func(name string, probe func(uint64) bool, block bool) {
				g := openGroup(t, server, name)
				g.SetHeartbeatHandler(func(rpc raft.RPC) {
					mu.Lock()
					served = append(served, name)
					mu.Unlock()
					if block {
						close(enteredA)
						<-release
					}
					req := rpc.Command.(*raft.AppendEntriesRequest)
					rpc.Respond(&raft.AppendEntriesResponse{RPCHeader: raft.RPCHeader{ID: []byte(name)}, Term: req.Term, Success: true}, nil)
				})
				if probe != nil {
					g.SetHeartbeatProbe(func(term uint64) bool {
						mu.Lock()
						asked[name] = term
						mu.Unlock()
						return probe(term)
					})
				}
			}
			serve("a", tc.probeA, tc.alone)
			serve("b", inMemory, false)
			servedSoFar := func() []string {
				mu.Lock()
				defer mu.Unlock()
				return slices.Clone(served)
			}

			// The client delays lazy frames only once enough groups send them (company):
			// three other groups' heartbeats make A's wait for company.
			warm := []string{"w0", "w1", "w2"}
			errs := make(chan error, len(warm))
			for _, name := range warm {
				answer(t, openGroup(t, server, name))
				g := openGroup(t, client, name)
				go func() { errs <- heartbeat(g, server.Addr()) }()
			}
			for range warm {
				if err := waitErr(t, "a warm-up heartbeat", func() error { return <-errs }); err != nil {
					t.Fatalf("warm-up heartbeat: %v", err)
				}
			}
			c, err := client.dial(context.Background(), server.Addr(), controlLane)
			if err != nil {
				t.Fatal(err)
			}
			queued := func(want int) func() bool {
				return func() bool {
					if len(servedSoFar()) > 0 {
						t.Fatalf("a heartbeat reached the server before both were queued: the test needs them in one write")
					}
					c.mu.Lock()
					defer c.mu.Unlock()
					return len(c.shared.queue) == want && c.shared.armed
				}
			}
			a := sendHeartbeat(openGroup(t, client, "a"), server.Addr(), termA)
			eventually(t, "A's heartbeat held for company", queued(1))
			b := sendHeartbeat(openGroup(t, client, "b"), server.Addr(), termB)
			eventually(t, "B's heartbeat queued behind A's", queued(2))

			if tc.alone {
				b.check(t, "b", termB)
				select {
				case <-a.done:
					t.Fatalf("A was answered while its handler was blocked")
				default:
				}
				waitErr(t, "A's handler", func() error { <-enteredA; return nil })
				free()
			}
			a.check(t, "a", termA)
			b.check(t, "b", termB)
			if got := servedSoFar(); !tc.alone && !slices.Equal(got, []string{"a", "b"}) {
				t.Fatalf("heartbeats served in order %v, want [a b]: they did not arrive in one read", got)
			}
			mu.Lock()
			defer mu.Unlock()
			want := map[string]uint64{"b": termB}
			if tc.probeA != nil {
				want["a"] = termA
			}
			if len(asked) != len(want) || asked["a"] != want["a"] || asked["b"] != want["b"] {
				t.Fatalf("probes asked about terms %v, want %v", asked, want)
			}
		})
	}
}

// pendingHeartbeat is a heartbeat sent in the background.
type pendingHeartbeat struct {
	done chan struct{}
	resp raft.AppendEntriesResponse // set once done is closed
	err  error
}

func sendHeartbeat(g *GroupTransport, target raft.ServerAddress, term uint64) *pendingHeartbeat {
	p := &pendingHeartbeat{done: make(chan struct{})}
	go func() {
		defer close(p.done)
		p.err = g.AppendEntries("x", target, &raft.AppendEntriesRequest{RPCHeader: raft.RPCHeader{Addr: []byte("l")}, Term: term}, &p.resp)
	}()
	return p
}

// check waits (boundedly) for the heartbeat's answer and checks it came from group's handler.
func (p *pendingHeartbeat) check(t *testing.T, group string, term uint64) {
	t.Helper()
	err := waitErr(t, "heartbeat of group "+group, func() error { <-p.done; return p.err })
	if err != nil || !p.resp.Success || p.resp.Term != term || string(p.resp.ID) != group {
		t.Fatalf("heartbeat of group %s answered %+v, %v; want success in term %d from %s", group, p.resp, err, term, group)
	}
}
