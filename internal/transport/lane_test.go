package transport

import (
	"bytes"
	"io"
	"net"
	"sync"
	"testing"

	"github.com/hashicorp/raft"
)

// TestHeartbeatsDoNotWaitBehindAppends: a cluster peer (mutual TLS, as every
// process runs) that stops reading a connection once a big AppendEntries is
// on it holds up that append only. Heartbeats and votes of another group
// travel on another connection and keep being answered while the append is
// stuck; on one shared connection they queued behind the append's bytes, and a
// 32-63 MiB batch cost other partitions their leaders. Once the peer reads
// again, the append arrives whole.
func TestHeartbeatsDoNotWaitBehindAppends(t *testing.T) {
	// Timeouts far beyond the test's steps: the append can only end early by failing
	// (neither side gives up on it while the proxy holds it), and a heartbeat stuck
	// behind it fails rather than hangs.
	ca := newCA(t)
	patient := func(id string) *Mux {
		cfg := tlsConfig(t, ca, id)
		cfg.Timeout = patientTimeout
		return startMux(t, cfg)
	}
	server := patient("broker/b1")
	answer(t, openGroup(t, server, "big"))
	answer(t, openGroup(t, server, "other"))
	stall := newStallingProxy(t, string(server.Addr()), 256<<10)
	client := patient("broker/b2")
	big, other := openGroup(t, client, "big"), openGroup(t, client, "other")
	target := raft.ServerAddress(stall.addr())
	// The server drops a connection whose requests name another sender than its certificate.
	from := raft.RPCHeader{ID: []byte("b2"), Addr: []byte(client.Addr())}

	const size = 4 << 20                // well beyond the proxy's limit
	var resp raft.AppendEntriesResponse // read once appended delivered
	appended := make(chan error, 1)
	go func() {
		entries := []*raft.Log{{Index: 1, Term: 1, Data: bytes.Repeat([]byte("x"), size)}}
		appended <- big.AppendEntries("b1", target, &raft.AppendEntriesRequest{RPCHeader: from, Term: 1, Entries: entries}, &resp)
	}()
	select {
	case <-stall.stuck: // the append is on its way and will not get through
	case err := <-appended:
		t.Fatalf("the append returned (%v) before it reached the peer", err)
	}

	for range 3 {
		hb := &raft.AppendEntriesRequest{RPCHeader: from, Term: 1}
		if err := other.AppendEntries("b1", target, hb, new(raft.AppendEntriesResponse)); err != nil {
			t.Fatalf("heartbeat behind a stalled append: %v", err)
		}
		if err := other.RequestVote("b1", target, &raft.RequestVoteRequest{RPCHeader: from, Term: 1}, new(raft.RequestVoteResponse)); err != nil {
			t.Fatalf("vote behind a stalled append: %v", err)
		}
	}
	select {
	case err := <-appended:
		t.Fatalf("the append returned (%v) while the peer was not reading it", err)
	default:
	}
	stall.release()
	if err := <-appended; err != nil { // bounded by the client's timeout
		t.Fatalf("the append, once the peer read again: %v", err)
	}
	if !resp.Success || resp.LastLog != 1 {
		t.Fatalf("the append was answered %+v", resp)
	}
}

// stallingProxy forwards TCP connections to a Mux, as the network between two
// processes. Once a connection has carried more than limit bytes towards the
// Mux, it stops reading from it (as a peer busy or slow would), until release.
type stallingProxy struct {
	ln       net.Listener
	limit    int
	stuck    chan struct{} // closed when the first connection stalls
	released chan struct{}
	stall    sync.Once
	unstall  sync.Once
	wg       sync.WaitGroup

	mu     sync.Mutex
	conns  []net.Conn
	closed bool
}

func newStallingProxy(t *testing.T, target string, limit int) *stallingProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &stallingProxy{ln: ln, limit: limit, stuck: make(chan struct{}), released: make(chan struct{})}
	t.Cleanup(p.close)
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			out, err := net.Dial("tcp", target)
			if err != nil {
				t.Errorf("proxy: %v", err)
				in.Close()
				continue
			}
			if !p.keep(in, out) {
				return
			}
			p.wg.Add(2)
			go func() { defer p.wg.Done(); p.forward(out, in) }()
			go func() {
				defer p.wg.Done()
				io.Copy(in, out)
				in.Close()
			}()
		}
	}()
	return p
}

func (p *stallingProxy) addr() string { return p.ln.Addr().String() }

func (p *stallingProxy) release() { p.unstall.Do(func() { close(p.released) }) }

// keep records conns for close; false if the proxy is closed already.
func (p *stallingProxy) keep(conns ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		for _, c := range conns {
			c.Close()
		}
		return false
	}
	p.conns = append(p.conns, conns...)
	return true
}

// forward copies from towards the Mux, pausing once past the limit.
func (p *stallingProxy) forward(to, from net.Conn) {
	defer to.Close()
	buf := make([]byte, 32<<10)
	sent := 0
	for {
		if sent > p.limit {
			p.stall.Do(func() { close(p.stuck) })
			<-p.released
		}
		n, err := from.Read(buf)
		if _, werr := to.Write(buf[:n]); werr != nil || err != nil {
			return
		}
		sent += n
	}
}

func (p *stallingProxy) close() {
	p.release()
	p.ln.Close()
	p.mu.Lock()
	for _, c := range p.conns {
		c.Close()
	}
	p.closed = true
	p.mu.Unlock()
	p.wg.Wait()
}
