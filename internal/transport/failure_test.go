package transport

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// waitErr fails the test if fn does not return within a generous bound: the
// point is that it returns at all rather than hanging.
func waitErr(t *testing.T, what string, fn func() error) error {
	t.Helper()
	ch := make(chan error, 1)
	go func() { ch <- fn() }()
	select {
	case err := <-ch:
		return err
	case <-time.After(30 * time.Second):
		t.Fatalf("%s did not return", what)
		return nil
	}
}

func heartbeat(g *GroupTransport, target raft.ServerAddress) error {
	return g.AppendEntries("x", target, &raft.AppendEntriesRequest{RPCHeader: raft.RPCHeader{Addr: []byte("l")}, Term: 1}, new(raft.AppendEntriesResponse))
}

func appendOne(g *GroupTransport, target raft.ServerAddress) error {
	return g.AppendEntries("x", target, &raft.AppendEntriesRequest{Term: 1, Entries: []*raft.Log{{Index: 1}}}, new(raft.AppendEntriesResponse))
}

func TestUnknownGroup(t *testing.T) {
	a, b := newMux(t), newMux(t)
	other := openGroup(t, b, "other")
	answer(t, other)
	ga := openGroup(t, a, "missing")
	tests := []struct {
		name string
		call func() error
	}{
		{"heartbeat", func() error { return heartbeat(ga, b.Addr()) }},
		{"append", func() error { return appendOne(ga, b.Addr()) }},
		{"vote", func() error {
			return ga.RequestVote("x", b.Addr(), &raft.RequestVoteRequest{Term: 1}, new(raft.RequestVoteResponse))
		}},
		{"snapshot", func() error {
			return ga.InstallSnapshot("x", b.Addr(), &raft.InstallSnapshotRequest{Size: 5}, new(raft.InstallSnapshotResponse), strings.NewReader("12345"))
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			if !errors.Is(err, ErrUnknownGroup) || !strings.Contains(err.Error(), `"missing"`) {
				t.Fatalf("got %v, want ErrUnknownGroup naming the group", err)
			}
		})
	}
	// The other group on b still works over the same connection.
	g2 := openGroup(t, a, "other")
	if err := appendOne(g2, b.Addr()); err != nil {
		t.Fatal(err)
	}
}

// TestVoteWaitsForTheGroupToOpen: a vote or pre-vote sent before the peer has opened
// the group (the members of a new group open at about the same time) reaches it once
// it does, instead of failing as refused.
func TestVoteWaitsForTheGroupToOpen(t *testing.T) {
	tests := []struct {
		name string
		call func(g *GroupTransport, target raft.ServerAddress) (granted bool, err error)
	}{
		{"vote", func(g *GroupTransport, target raft.ServerAddress) (bool, error) {
			var resp raft.RequestVoteResponse
			err := g.RequestVote("x", target, &raft.RequestVoteRequest{Term: 1}, &resp)
			return resp.Granted, err
		}},
		{"pre-vote", func(g *GroupTransport, target raft.ServerAddress) (bool, error) {
			var resp raft.RequestPreVoteResponse
			err := g.RequestPreVote("x", target, &raft.RequestPreVoteRequest{Term: 1}, &resp)
			return resp.Granted, err
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, b := newMux(t), newMux(t)
			ga := openGroup(t, a, "late")
			type result struct {
				granted bool
				err     error
			}
			done := make(chan result, 1)
			go func() {
				granted, err := tc.call(ga, b.Addr())
				done <- result{granted, err}
			}()
			time.Sleep(3 * openRetry) // the request was answered "unknown group" by now
			answer(t, openGroup(t, b, "late"))
			if r := <-done; r.err != nil || !r.granted {
				t.Fatalf("granted %v, error %v; want granted once the peer opened the group", r.granted, r.err)
			}
		})
	}
}

func TestGarbageDropsOnlyThatConnection(t *testing.T) {
	a, b := newMux(t), newMux(t)
	answer(t, openGroup(t, b, "g"))
	ga := openGroup(t, a, "g")
	frameOf := func(body []byte) []byte {
		return binary.BigEndian.AppendUint32(nil, uint32(len(body))) //nolint:gosec // test data
	}
	random := make([]byte, 4096)
	rand.New(rand.NewSource(1)).Read(random)
	tests := []struct {
		name string
		data []byte
	}{
		{"random bytes", random},
		{"preamble then random bytes", append([]byte(preamble), random...)},
		{"oversized length", append([]byte(preamble), 0xff, 0xff, 0xff, 0xff)},
		{"zero length", append([]byte(preamble), 0, 0, 0, 0)},
		{"unknown kind", append(append([]byte(preamble), frameOf(make([]byte, 9))...), 9, 0, 0, 0, 0, 0, 0, 0, 1)},
		{"short header", append(append([]byte(preamble), frameOf([]byte{kindResponse, 1})...), kindResponse, 1)},
		{"response on an incoming connection", append(append([]byte(preamble), frameOf(make([]byte, 9))...), kindResponse, 0, 0, 0, 0, 0, 0, 0, 1)},
		{"undecodable raft payload", func() []byte {
			b, _ := requestFrame(rpcAppendEntries, "g", "", 0, []byte{0xc1, 0xc1})
			return append([]byte(preamble), b...)
		}()},
		{"name longer than its frame", func() []byte {
			b, _ := requestFrame(rpcAppendEntries, "g", "", 0, nil)
			b[4+1+8+1] = 100 // group length byte
			return append([]byte(preamble), b...)
		}()},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := appendOne(ga, b.Addr()); err != nil {
				t.Fatalf("before: %v", err)
			}
			nc, err := net.Dial("tcp", string(b.Addr()))
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			nc.Write(tc.data)
			nc.SetReadDeadline(time.Now().Add(20 * time.Second))
			// A reset is a close too: the peer closed with our bytes unread.
			if n, err := io.Copy(io.Discard, nc); (err != nil && !errors.Is(err, syscall.ECONNRESET)) || n != 0 {
				t.Fatalf("connection not closed: read %d bytes, %v", n, err)
			}
			if err := appendOne(ga, b.Addr()); err != nil {
				t.Fatalf("after: %v", err)
			}
		})
	}
}

func TestPeerDown(t *testing.T) {
	a, b := newMux(t), newMux(t)
	ga := openGroup(t, a, "g")
	answer(t, openGroup(t, b, "g"))
	b.Handle("g", "echo", func(ctx context.Context, req []byte) ([]byte, error) { return req, nil })
	if _, err := a.Call(context.Background(), b.Addr(), "g", "echo", nil); err != nil {
		t.Fatal(err)
	}
	b.Close()
	tests := []struct {
		name string
		call func() error
	}{
		{"Call", func() error {
			_, err := a.Call(context.Background(), b.Addr(), "g", "echo", nil)
			return err
		}},
		{"AppendEntries", func() error { return appendOne(ga, b.Addr()) }},
		{"Heartbeat", func() error { return heartbeat(ga, b.Addr()) }},
		{"Pipeline", func() error {
			_, err := ga.AppendEntriesPipeline("x", b.Addr())
			return err
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// The first call after the drop may see the old connection die;
			// either way it and the next one must fail, the next with a refused dial.
			waitErr(t, tc.name, tc.call)
			err := waitErr(t, tc.name, tc.call)
			if !errors.Is(err, syscall.ECONNREFUSED) {
				t.Fatalf("got %v, want connection refused", err)
			}
		})
	}
}

func TestCloseUnblocks(t *testing.T) {
	blockForever := func(ctx context.Context, req []byte) ([]byte, error) {
		select {} // ignores ctx on purpose: the caller must still be released
	}
	tests := []struct {
		name  string
		close func(a, b *Mux, ga *GroupTransport)
		want  func(error) bool
	}{
		{"caller mux closed", func(a, b *Mux, _ *GroupTransport) { a.Close() }, func(err error) bool { return errors.Is(err, ErrClosed) }},
		{"callee mux closed", func(a, b *Mux, _ *GroupTransport) { b.Close() }, func(err error) bool { return err != nil }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, b := newMux(t), newMux(t)
			b.Handle("g", "block", blockForever)
			started := make(chan struct{})
			b.Handle("g", "started", func(ctx context.Context, req []byte) ([]byte, error) { close(started); return nil, nil })
			errc := make(chan error, 1)
			go func() {
				_, err := a.Call(context.Background(), b.Addr(), "g", "block", nil)
				errc <- err
			}()
			if _, err := a.Call(context.Background(), b.Addr(), "g", "started", nil); err != nil {
				t.Fatal(err)
			}
			<-started
			tc.close(a, b, nil)
			select {
			case err := <-errc:
				if !tc.want(err) {
					t.Fatalf("unexpected error %v", err)
				}
			case <-time.After(30 * time.Second):
				t.Fatal("Call still blocked after Close")
			}
		})
	}
}

func TestGroupClose(t *testing.T) {
	a, b := newMux(t), newMux(t)
	ga := openGroup(t, a, "g")
	kept := openGroup(t, b, "kept")
	answer(t, kept)
	gb, err := b.Transport("g")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Transport("g"); err == nil {
		t.Fatal("opening a group twice succeeded")
	}

	// An RPC raft never picks up is answered with an error once the group closes.
	errc := make(chan error, 1)
	go func() { errc <- appendOne(ga, b.Addr()) }()
	time.Sleep(100 * time.Millisecond)
	gb.Close()
	if err := waitErr(t, "append to closing group", func() error { return <-errc }); !errors.Is(err, ErrClosed) && !errors.Is(err, ErrUnknownGroup) {
		t.Fatalf("got %v, want ErrClosed or ErrUnknownGroup", err)
	}
	if err := appendOne(ga, b.Addr()); !errors.Is(err, ErrUnknownGroup) {
		t.Fatalf("after close: got %v, want ErrUnknownGroup", err)
	}
	kga := openGroup(t, a, "kept")
	if err := appendOne(kga, b.Addr()); err != nil {
		t.Fatalf("other group: %v", err)
	}
	// The name can be opened again.
	answer(t, openGroup(t, b, "g"))
	if err := appendOne(ga, b.Addr()); err != nil {
		t.Fatalf("reopened: %v", err)
	}
	// Calls of a closed group fail at once.
	ga.Close()
	if err := appendOne(ga, b.Addr()); !errors.Is(err, raft.ErrTransportShutdown) {
		t.Fatalf("closed sender: got %v, want ErrTransportShutdown", err)
	}
}

// TestUnansweredRPCsExpire: a peer that accepts and reads but never answers
// fails raft RPCs after the timeout, and its silent connection is replaced.
func TestUnansweredRPCsExpire(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan struct{}, 10)
	go func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- struct{}{}
			go io.Copy(io.Discard, nc)
		}
	}()
	m, err := New(Config{BindAddr: "127.0.0.1:0", Timeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	g := openGroup(t, m, "g")
	target := raft.ServerAddress(ln.Addr().String())
	tests := []struct {
		name string
		call func() error
	}{
		{"heartbeat", func() error { return heartbeat(g, target) }},
		{"append", func() error { return appendOne(g, target) }},
		{"pipeline", func() error {
			p, err := g.AppendEntriesPipeline("x", target)
			if err != nil {
				return err
			}
			defer p.Close()
			if _, err := p.AppendEntries(&raft.AppendEntriesRequest{Term: 1}, new(raft.AppendEntriesResponse)); err != nil {
				return err
			}
			return (<-p.Consumer()).Error()
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := waitErr(t, tc.name, tc.call); !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("got %v, want a deadline error", err)
			}
		})
	}
	if len(accepted) < 2 {
		t.Fatalf("the silent connection was not replaced (%d accepted)", len(accepted))
	}
}

// TestAcceptSurvivesEMFILE runs the process out of file descriptors while a
// peer connects: accept fails with EMFILE, backs off, and serves the peer once
// descriptors are free again.
func TestAcceptSurvivesEMFILE(t *testing.T) {
	var logs syncBuffer
	a := newMux(t)
	b, err := New(Config{BindAddr: "127.0.0.1:0", Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	b.Handle("g", "echo", func(ctx context.Context, req []byte) ([]byte, error) { return req, nil })

	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	// A few descriptors above those open now, whatever the tests before left open.
	open, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	low := lim
	low.Cur = uint64(len(open)) + 16
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &low); err != nil { // lowering needs no privilege
		t.Fatalf("lower the open file limit: %v", err)
	}
	defer syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
	var filler []*os.File
	release := func() {
		for _, f := range filler {
			f.Close()
		}
		filler = nil
	}
	defer release()
	for {
		f, err := os.Open(os.DevNull)
		if err != nil {
			if !errors.Is(err, syscall.EMFILE) {
				t.Fatal(err)
			}
			break
		}
		filler = append(filler, f)
	}
	if len(filler) == 0 {
		t.Fatalf("the %d descriptors above those open were taken before the test could", low.Cur-uint64(len(open)))
	}
	// One free descriptor: the caller's socket gets it, b's accept does not.
	filler[len(filler)-1].Close()
	filler = filler[:len(filler)-1]

	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		got, err := a.Call(ctx, b.Addr(), "g", "echo", []byte("hi"))
		if err == nil && string(got) != "hi" {
			err = fmt.Errorf("got %q", got)
		}
		done <- err
	}()
	time.Sleep(300 * time.Millisecond) // let accept fail and back off a few times
	release()
	syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
	if err := waitErr(t, "call after EMFILE", func() error { return <-done }); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), "too many open files") {
		t.Fatalf("accept never failed with EMFILE; log:\n%s", logs.String())
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestCloseLeavesNoGoroutines: after traffic of every kind, closing the
// muxes stops every goroutine they started.
func TestCloseLeavesNoGoroutines(t *testing.T) {
	before := runtime.NumGoroutine()
	func() {
		a, b := newMux(t), newMux(t)
		b.Handle("g", "echo", func(ctx context.Context, req []byte) ([]byte, error) { return req, nil })
		ga, gb := openGroup(t, a, "g"), openGroup(t, b, "g")
		gb.SetHeartbeatHandler(func(rpc raft.RPC) { rpc.Respond(&raft.AppendEntriesResponse{Success: true}, nil) })
		answer(t, gb)
		if err := heartbeat(ga, b.Addr()); err != nil {
			t.Fatal(err)
		}
		if err := appendOne(ga, b.Addr()); err != nil {
			t.Fatal(err)
		}
		p, err := ga.AppendEntriesPipeline("b", b.Addr())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := p.AppendEntries(&raft.AppendEntriesRequest{Term: 1}, new(raft.AppendEntriesResponse)); err != nil {
			t.Fatal(err)
		}
		<-p.Consumer()
		if _, err := a.Call(context.Background(), b.Addr(), "g", "echo", nil); err != nil {
			t.Fatal(err)
		}
		// p is left open on purpose: closing the group must stop it.
		ga.Close()
		a.Close()
		b.Close()
	}()
	deadline := time.Now().Add(30 * time.Second)
	for runtime.NumGoroutine() > before+1 { // +1: answer's consumer stops at cleanup
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines before, %d after close:\n%s", before, runtime.NumGoroutine(), buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(20 * time.Millisecond)
	}
}
