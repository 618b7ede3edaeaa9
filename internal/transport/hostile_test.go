package transport

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// memory is what the process holds: VmRSS (as ps shows it) and the Go heap in use.
type memory struct{ rss, heap uint64 }

func measure(t *testing.T) memory {
	t.Helper()
	runtime.GC()
	debug.FreeOSMemory()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(status)) {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return memory{rss: kb << 10, heap: ms.HeapInuse}
		}
	}
	t.Fatal("no VmRSS in /proc/self/status")
	return memory{}
}

func (m memory) String() string {
	return strconv.FormatUint(m.rss>>20, 10) + " MB RSS, " + strconv.FormatUint(m.heap>>20, 10) + " MB heap"
}

// grownBy is the larger of the two growths since before, in bytes.
func (m memory) grownBy(before memory) uint64 {
	growth := func(now, then uint64) uint64 { return max(now, then) - then }
	return max(growth(m.rss, before.rss), growth(m.heap, before.heap))
}

// lengthPrefix is a preamble and the 4-byte length of a frame that never comes.
func lengthPrefix(n uint32) []byte {
	return binary.BigEndian.AppendUint32([]byte(preamble), n)
}

// goroutinesIn counts the goroutines whose stack passes through fn.
func goroutinesIn(fn string) int {
	buf := make([]byte, 64<<20)
	return strings.Count(string(buf[:runtime.Stack(buf, true)]), "transport."+fn+"(")
}

// TestHostileConnectionsStayCheap: 1,000 connections that announce big frames
// and send nothing, or stop after the preamble, cost a few megabytes rather
// than a megabyte each, the port keeps serving Raft meanwhile, and the memory
// is returned once they close. (A 1 MiB length prefix used to allocate 1 MiB
// on the spot: 1,000 of them took a broker from 34 to 353 MB RSS.)
func TestHostileConnectionsStayCheap(t *testing.T) {
	const perKind = 500
	const bound = 50 << 20
	a, b := newMux(t), newMux(t)
	answer(t, openGroup(t, b, "g"))
	ga := openGroup(t, a, "g")
	if err := appendOne(ga, b.Addr()); err != nil {
		t.Fatal(err)
	}
	before := measure(t)

	var conns []net.Conn
	defer func() {
		for _, nc := range conns {
			nc.Close()
		}
	}()
	kinds := []struct {
		name string
		data []byte
	}{
		{"1 MiB length prefix", lengthPrefix(1 << 20)},
		{"frame-limit length prefix", lengthPrefix(maxFrame)},
		{"idle after the preamble", []byte(preamble)},
	}
	for i := range 2 * perKind {
		nc, err := net.Dial("tcp", string(b.Addr()))
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, nc)
		kind := kinds[min(i/perKind*2+i%2, len(kinds)-1)] // first half: both prefixes in turn
		if _, err := nc.Write(kind.data); err != nil {
			t.Fatalf("%s: %v", kind.name, err)
		}
	}
	eventually(t, "every hostile connection past its preamble", func() bool {
		return goroutinesIn("readBody") >= perKind && goroutinesIn("readLength") >= perKind
	})
	if err := appendOne(ga, b.Addr()); err != nil {
		t.Fatalf("raft traffic during the attack: %v", err)
	}
	during := measure(t)
	t.Logf("before: %v; with %d hostile connections: %v", before, len(conns), during)
	// Under -race the detector's shadow memory (about 60 MB for these goroutines, never
	// returned) swamps the bound; the memory bound holds in the plain build (21 MB with
	// 1,000 connections, 12 MB after close), the attack's other checks run in both.
	if !raceEnabled && during.grownBy(before) > bound {
		t.Fatalf("%d hostile connections grew memory from %v to %v (bound %d MB)", len(conns), before, during, bound>>20)
	}

	for _, nc := range conns {
		nc.Close()
	}
	conns = nil
	eventually(t, "the hostile connections closed", func() bool { return b.incoming.Load() <= 1 })
	after := measure(t)
	t.Logf("after they closed: %v", after)
	if !raceEnabled && after.grownBy(before) > bound/5 {
		t.Fatalf("memory not returned after close: %v before, %v after", before, after)
	}
	if err := appendOne(ga, b.Addr()); err != nil {
		t.Fatalf("raft traffic after the attack: %v", err)
	}
}

// closedByPeer reports whether the peer closed nc within a generous bound.
func closedByPeer(nc net.Conn) error {
	nc.SetReadDeadline(time.Now().Add(30 * time.Second))
	_, err := io.Copy(io.Discard, nc)
	if err == nil || errors.Is(err, syscall.ECONNRESET) {
		return nil
	}
	return err
}

// TestQuietConnectionsAreClosed: a connection that sends no preamble, stops
// after it, or stops inside a frame is closed after the deadlines, while a
// peer's traffic goes on.
func TestQuietConnectionsAreClosed(t *testing.T) {
	cfg := Config{BindAddr: "127.0.0.1:0", Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Timeout: 300 * time.Millisecond, IdleTimeout: 600 * time.Millisecond}
	var muxes [2]*Mux
	for i := range muxes {
		m, err := New(cfg) // peers share the idle timeout: a dialer drops its idle conns first
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		muxes[i] = m
	}
	a, b := muxes[0], muxes[1]
	answer(t, openGroup(t, b, "g"))
	ga := openGroup(t, a, "g")
	tests := []struct {
		name string
		data []byte
	}{
		{"nothing", nil},
		{"half a preamble", []byte(preamble[:2])},
		{"preamble only", []byte(preamble)},
		{"half a length prefix", lengthPrefix(100)[:len(preamble)+2]},
		{"length prefix only", lengthPrefix(100)},
		{"part of a frame", append(lengthPrefix(100), make([]byte, 10)...)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			nc, err := net.Dial("tcp", string(b.Addr()))
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			nc.Write(tc.data)
			if err := closedByPeer(nc); err != nil {
				t.Fatalf("not closed: %v", err)
			}
			if err := appendOne(ga, b.Addr()); err != nil {
				t.Fatalf("raft traffic: %v", err)
			}
		})
	}
}

// TestConnectionCap: past MaxConns incoming connections, new ones are closed
// at once (peers included) until some close; the held ones keep working.
func TestConnectionCap(t *testing.T) {
	const limit = 4
	a := newMux(t)
	b, err := New(Config{BindAddr: "127.0.0.1:0", Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Timeout: 5 * time.Second, MaxConns: limit})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	answer(t, openGroup(t, b, "g"))
	ga := openGroup(t, a, "g")
	if err := appendOne(ga, b.Addr()); err != nil { // a's conn is one of the limit
		t.Fatal(err)
	}
	var held []net.Conn
	for range limit - 1 {
		nc, err := net.Dial("tcp", string(b.Addr()))
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		nc.Write([]byte(preamble))
		held = append(held, nc)
	}
	eventually(t, "the limit reached", func() bool { return b.incoming.Load() == limit })
	extra, err := net.Dial("tcp", string(b.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	defer extra.Close()
	if err := closedByPeer(extra); err != nil {
		t.Fatalf("connection past the limit not closed: %v", err)
	}
	if err := appendOne(ga, b.Addr()); err != nil {
		t.Fatalf("a held connection stopped working: %v", err)
	}

	held[0].Close()
	eventually(t, "a slot freed", func() bool { return b.incoming.Load() < limit })
	late, err := net.Dial("tcp", string(b.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	defer late.Close()
	// Accepted this time: a call of a method nobody handles is answered.
	req, _ := requestFrame(rpcCustom, "g", "none", 0, nil)
	late.Write(append([]byte(preamble), req...))
	late.SetReadDeadline(time.Now().Add(30 * time.Second))
	got, err := readFrame(bufio.NewReader(late))
	if err != nil || got.kind != kindError || !bytes.Contains(got.payload, []byte("none")) {
		t.Fatalf("connection after a slot freed: %+v, %v", got, err)
	}
}
