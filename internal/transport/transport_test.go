package transport

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// newMux starts a plain Mux whose 5 s Timeout the tests of timeouts and failures wait out.
func newMux(t testing.TB) *Mux {
	t.Helper()
	return startMux(t, Config{BindAddr: "127.0.0.1:0", Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Timeout: 5 * time.Second})
}

// patientTimeout is the Mux Timeout of tests of what arrives rather than when: on a
// loaded 2-core machine under -race, 5 s (15 s for 800 KB) was too short for 36
// snapshots sent at once, or for a 5 MiB frame.
const patientTimeout = 2 * time.Minute

func patientMux(t testing.TB) *Mux {
	t.Helper()
	return startMux(t, Config{BindAddr: "127.0.0.1:0", Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Timeout: patientTimeout})
}

func openGroup(t testing.TB, m *Mux, group string) *GroupTransport {
	t.Helper()
	g, err := m.Transport(group)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close() })
	return g
}

// answer plays raft on g: every RPC is answered with a response naming the
// group, so a test can tell that a request reached the right group.
func answer(t testing.TB, g *GroupTransport) {
	t.Helper()
	stop := make(chan struct{})
	done := make(chan struct{})
	t.Cleanup(func() { close(stop); <-done })
	go func() {
		defer close(done)
		for {
			select {
			case rpc := <-g.Consumer():
				rpc.Respond(respond(g.name, rpc))
			case <-stop:
				return
			}
		}
	}()
}

func respond(group string, rpc raft.RPC) (any, error) {
	hdr := raft.RPCHeader{ID: []byte(group)}
	switch cmd := rpc.Command.(type) {
	case *raft.AppendEntriesRequest:
		return &raft.AppendEntriesResponse{RPCHeader: hdr, Term: cmd.Term, LastLog: uint64(len(cmd.Entries)), Success: true}, nil
	case *raft.RequestVoteRequest:
		return &raft.RequestVoteResponse{RPCHeader: hdr, Term: cmd.Term, Granted: true}, nil
	case *raft.RequestPreVoteRequest:
		return &raft.RequestPreVoteResponse{RPCHeader: hdr, Term: cmd.Term, Granted: true}, nil
	case *raft.TimeoutNowRequest:
		return &raft.TimeoutNowResponse{RPCHeader: raft.RPCHeader{ID: hdr.ID, Addr: []byte("tn")}}, nil
	case *raft.InstallSnapshotRequest:
		data, err := io.ReadAll(rpc.Reader)
		if err != nil {
			return nil, err
		}
		if int64(len(data)) != cmd.Size {
			return nil, fmt.Errorf("got %d snapshot bytes, want %d", len(data), cmd.Size)
		}
		return &raft.InstallSnapshotResponse{RPCHeader: raft.RPCHeader{ID: []byte(group), Addr: data[:min(len(data), 8)]}, Term: cmd.Term, Success: true}, nil
	}
	return nil, fmt.Errorf("unexpected command %T", rpc.Command)
}

func TestRaftRPCsRoundTrip(t *testing.T) {
	muxes := []*Mux{patientMux(t), patientMux(t), patientMux(t)}
	groups := []string{"atm", "managers", "p/orders/0", "p/orders/1"}
	gt := make(map[*Mux]map[string]*GroupTransport)
	for _, m := range muxes {
		gt[m] = make(map[string]*GroupTransport)
		for _, name := range groups {
			g := openGroup(t, m, name)
			answer(t, g)
			gt[m][name] = g
		}
	}
	entries := []*raft.Log{{Index: 1, Term: 2, Type: raft.LogCommand, Data: bytes.Repeat([]byte("x"), 1024)}, {Index: 2, Term: 2, Data: []byte("y")}}
	snapshot := bytes.Repeat([]byte("snapshot"), 100_000)
	tests := []struct {
		name  string
		call  func(g *GroupTransport, target raft.ServerAddress) (raft.RPCHeader, error)
		check func(t *testing.T) // optional extra check of the response
	}{
		{"AppendEntries", func(g *GroupTransport, target raft.ServerAddress) (raft.RPCHeader, error) {
			var resp raft.AppendEntriesResponse
			err := g.AppendEntries("x", target, &raft.AppendEntriesRequest{Term: 3, PrevLogEntry: 0, Entries: entries}, &resp)
			if err == nil && (resp.LastLog != 2 || !resp.Success || resp.Term != 3) {
				err = fmt.Errorf("bad response %+v", resp)
			}
			return resp.RPCHeader, err
		}, nil},
		{"Heartbeat", func(g *GroupTransport, target raft.ServerAddress) (raft.RPCHeader, error) {
			var resp raft.AppendEntriesResponse
			err := g.AppendEntries("x", target, &raft.AppendEntriesRequest{RPCHeader: raft.RPCHeader{Addr: []byte("leader")}, Term: 5}, &resp)
			if err == nil && resp.Term != 5 {
				err = fmt.Errorf("bad response %+v", resp)
			}
			return resp.RPCHeader, err
		}, nil},
		{"RequestVote", func(g *GroupTransport, target raft.ServerAddress) (raft.RPCHeader, error) {
			var resp raft.RequestVoteResponse
			err := g.RequestVote("x", target, &raft.RequestVoteRequest{Term: 4}, &resp)
			if err == nil && (!resp.Granted || resp.Term != 4) {
				err = fmt.Errorf("bad response %+v", resp)
			}
			return resp.RPCHeader, err
		}, nil},
		{"RequestPreVote", func(g *GroupTransport, target raft.ServerAddress) (raft.RPCHeader, error) {
			var resp raft.RequestPreVoteResponse
			err := g.RequestPreVote("x", target, &raft.RequestPreVoteRequest{Term: 9}, &resp)
			if err == nil && (!resp.Granted || resp.Term != 9) {
				err = fmt.Errorf("bad response %+v", resp)
			}
			return resp.RPCHeader, err
		}, nil},
		{"TimeoutNow", func(g *GroupTransport, target raft.ServerAddress) (raft.RPCHeader, error) {
			var resp raft.TimeoutNowResponse
			err := g.TimeoutNow("x", target, &raft.TimeoutNowRequest{}, &resp)
			if err == nil && string(resp.Addr) != "tn" {
				err = fmt.Errorf("bad response %+v", resp)
			}
			return resp.RPCHeader, err
		}, nil},
		{"InstallSnapshot", func(g *GroupTransport, target raft.ServerAddress) (raft.RPCHeader, error) {
			var resp raft.InstallSnapshotResponse
			err := g.InstallSnapshot("x", target, &raft.InstallSnapshotRequest{Term: 6, Size: int64(len(snapshot))}, &resp, bytes.NewReader(snapshot))
			if err == nil && (!resp.Success || string(resp.Addr) != "snapshot") {
				err = fmt.Errorf("bad response %+v", resp)
			}
			return resp.RPCHeader, err
		}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var wg sync.WaitGroup
			for _, from := range muxes {
				for _, to := range muxes {
					for _, name := range groups {
						wg.Add(1)
						go func() {
							defer wg.Done()
							hdr, err := tc.call(gt[from][name], to.Addr())
							if err != nil {
								t.Errorf("%s -> %s group %s: %v", from.Addr(), to.Addr(), name, err)
							} else if string(hdr.ID) != name {
								t.Errorf("%s -> %s group %s: answered by group %q", from.Addr(), to.Addr(), name, hdr.ID)
							}
						}()
					}
				}
			}
			wg.Wait()
		})
	}
}

func TestPipelineKeepsOrder(t *testing.T) {
	a, b := newMux(t), newMux(t)
	ga := openGroup(t, a, "g")
	gb := openGroup(t, b, "g")
	const n = 200
	seen := make(chan uint64, n)
	go func() {
		for i := 0; i < n; i++ {
			rpc := <-gb.Consumer()
			req := rpc.Command.(*raft.AppendEntriesRequest)
			seen <- req.PrevLogEntry
			rpc.Respond(&raft.AppendEntriesResponse{Term: req.Term, LastLog: req.PrevLogEntry, Success: true}, nil)
		}
	}()
	p, err := ga.AppendEntriesPipeline("b", b.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	go func() {
		for i := uint64(1); i <= n; i++ {
			if _, err := p.AppendEntries(&raft.AppendEntriesRequest{Term: 1, PrevLogEntry: i, Entries: []*raft.Log{{Index: i + 1}}}, new(raft.AppendEntriesResponse)); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	for i := uint64(1); i <= n; i++ {
		select {
		case fut := <-p.Consumer():
			if err := fut.Error(); err != nil {
				t.Fatal(err)
			}
			if got := fut.Response().LastLog; got != i || fut.Request().PrevLogEntry != i {
				t.Fatalf("future %d: response for %d", i, got)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("no future %d", i)
		}
		if got := <-seen; got != i {
			t.Fatalf("follower saw request %d, want %d", got, i)
		}
	}
}

func TestCall(t *testing.T) {
	a, b := newMux(t), newMux(t)
	openGroup(t, b, "open-no-handlers")
	b.Handle("g", "echo", func(ctx context.Context, req []byte) ([]byte, error) {
		return append([]byte("echo:"), req...), nil
	})
	b.Handle("g", "fail", func(ctx context.Context, req []byte) ([]byte, error) {
		return nil, errors.New("not the leader")
	})
	b.Handle("g", "panic", func(ctx context.Context, req []byte) ([]byte, error) {
		panic("boom")
	})
	b.Handle("g", "wait", func(ctx context.Context, req []byte) ([]byte, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	})
	tests := []struct {
		group, method string
		want          string
		wantErr       func(error) bool
	}{
		{"g", "echo", "echo:hi", nil},
		{"g", "fail", "", func(err error) bool {
			var re *RemoteError
			return errors.As(err, &re) && re.Msg == "not the leader"
		}},
		{"g", "panic", "", func(err error) bool {
			var re *RemoteError
			return errors.As(err, &re) && strings.Contains(re.Msg, "boom")
		}},
		{"g", "missing", "", func(err error) bool { return errors.Is(err, ErrUnknownMethod) }},
		{"open-no-handlers", "echo", "", func(err error) bool { return errors.Is(err, ErrUnknownMethod) }},
		{"nope", "echo", "", func(err error) bool {
			return errors.Is(err, ErrUnknownGroup) && strings.Contains(err.Error(), `"nope"`)
		}},
		{"g", "wait", "", func(err error) bool { return errors.Is(err, context.DeadlineExceeded) }},
	}
	for _, tc := range tests {
		t.Run(tc.group+"/"+tc.method, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancel()
			got, err := a.Call(ctx, b.Addr(), tc.group, tc.method, []byte("hi"))
			if tc.wantErr == nil {
				if err != nil || string(got) != tc.want {
					t.Fatalf("got %q, %v; want %q", got, err, tc.want)
				}
				return
			}
			if !tc.wantErr(err) {
				t.Fatalf("unexpected error %v", err)
			}
		})
	}
}

func TestCompanyDecidesDelay(t *testing.T) {
	const w = 4 * time.Millisecond
	gs := make([]*GroupTransport, 6)
	for i := range gs {
		gs[i] = &GroupTransport{name: fmt.Sprint(i)}
	}
	type note struct {
		g  int
		at time.Duration
	}
	tests := []struct {
		name  string
		notes []note
		want  bool // for the last note
	}{
		{"one group back to back", []note{{0, 0}, {0, 10 * time.Microsecond}, {0, 20 * time.Microsecond}, {0, 30 * time.Microsecond}, {0, 40 * time.Microsecond}}, false},
		{"two groups ping-ponging", []note{{0, 0}, {1, 1}, {0, 2}, {1, 3}, {0, 4}, {1, 5}}, false},
		{"four groups in a window", []note{{0, 0}, {1, 1}, {2, 2}, {3, 3}}, true},
		{"four groups last window, one now", []note{{0, 0}, {1, 1}, {2, 2}, {3, 3}, {4, w + time.Millisecond}}, true},
		{"four groups long ago", []note{{0, 0}, {1, 1}, {2, 2}, {3, 3}, {4, 3 * w}}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var k company
			base := time.Now()
			var got bool
			for _, n := range tc.notes {
				got = k.note(gs[n.g], base.Add(n.at), w)
			}
			if got != tc.want {
				t.Fatalf("delay = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestLargeMessages sends messages whose frame buffers grow as bytes arrive,
// past a read buffer's size and past the size of a first allocation.
func TestLargeMessages(t *testing.T) {
	a, b := patientMux(t), patientMux(t)
	answer(t, openGroup(t, b, "g"))
	g := openGroup(t, a, "g")
	b.Handle("g", "len", func(ctx context.Context, req []byte) ([]byte, error) {
		return []byte(fmt.Sprint(len(req))), nil
	})
	for _, size := range []int{firstChunk - 100, firstChunk + 1, readBufSize + 1, 5 << 20} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			entries := []*raft.Log{{Index: 1, Data: bytes.Repeat([]byte("a"), size)}, {Index: 2, Data: []byte("b")}}
			var resp raft.AppendEntriesResponse
			if err := g.AppendEntries("b", b.Addr(), &raft.AppendEntriesRequest{Term: 1, Entries: entries}, &resp); err != nil || resp.LastLog != 2 {
				t.Fatalf("append: %v, %+v", err, resp)
			}
			got, err := a.Call(context.Background(), b.Addr(), "g", "len", make([]byte, size))
			if err != nil || string(got) != fmt.Sprint(size) {
				t.Fatalf("call: %q, %v", got, err)
			}
		})
	}
}

// TestCallCancelReachesHandler: a caller that gives up cancels the handler's
// context on the other process; a deadline travels with the request.
func TestCallCancelReachesHandler(t *testing.T) {
	a, b := newMux(t), newMux(t)
	started := make(chan struct{}, 1)
	ended := make(chan error, 1)
	b.Handle("g", "block", func(ctx context.Context, req []byte) ([]byte, error) {
		started <- struct{}{}
		<-ctx.Done()
		ended <- ctx.Err()
		return nil, ctx.Err()
	})
	tests := []struct {
		name string
		ctx  func() (context.Context, context.CancelFunc)
		stop func(cancel context.CancelFunc)
		want error
	}{
		{"cancel", func() (context.Context, context.CancelFunc) { return context.WithCancel(context.Background()) }, func(cancel context.CancelFunc) { cancel() }, context.Canceled},
		{"deadline", func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(context.Background(), 200*time.Millisecond)
		}, func(context.CancelFunc) {}, context.DeadlineExceeded},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := tc.ctx()
			defer cancel()
			errc := make(chan error, 1)
			go func() {
				_, err := a.Call(ctx, b.Addr(), "g", "block", nil)
				errc <- err
			}()
			<-started
			tc.stop(cancel)
			if err := <-errc; !errors.Is(err, tc.want) {
				t.Fatalf("caller got %v, want %v", err, tc.want)
			}
			select {
			case err := <-ended:
				if !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
					t.Fatalf("handler ended with %v", err)
				}
			case <-time.After(30 * time.Second):
				t.Fatal("the handler was not cancelled")
			}
		})
	}
}
