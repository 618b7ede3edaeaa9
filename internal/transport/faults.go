package transport

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/raft"
)

// Network faults for tests: frames between this process and a peer can be lost or
// delayed per direction, while the TCP connection itself stays up, which is what a
// partition, a one-way cut or a slow link look like to the peers.
//
// Every frame a process exchanges with a peer crosses one of the two processes'
// outgoing connections: its own requests and the peer's answers on its connection
// to the peer, the peer's requests and its own answers on the peer's connection to
// it. So faults act on outgoing connections only, where the peer is known by the
// address that was dialed: Out on the frames written (this process's requests), In
// on the frames read (the peer's answers). The link A→B is cut by Out on A for B
// and In on B for A (electiontest.Cluster.Cut does both).
//
// A process outside tests never has faults: they are set through Mux.SetFaults
// (in-process tests) or, for real processes, through the file named by
// QUORUMQ_FAULT_FILE, which only whoever starts the process can set, and which is
// read only if it is this process's user's alone (see readFaultFile). No network
// request can change them.

// LinkFault is what happens to the frames of one direction of one link.
type LinkFault struct {
	Drop  bool          // every frame is lost
	Loss  float64       // each frame is lost with this probability (0–1)
	Delay time.Duration // frames arrive this much later, still in order
}

func (f LinkFault) lossy() bool { return f.Drop || f.Loss > 0 }

// Faults are the link faults of a process, by peer address. The zero value is a
// healthy network.
type Faults struct {
	Out map[raft.ServerAddress]LinkFault // frames this process sends the peer
	In  map[raft.ServerAddress]LinkFault // frames the peer sends this process
}

// Link is one direction between two processes, by their index in a list of addresses.
type Link struct{ From, To int }

// FaultsOf splits link faults among the processes at addrs: the sender of a link
// loses or delays its requests, the receiver the answers it reads.
func FaultsOf(addrs []string, links map[Link]LinkFault) []Faults {
	per := make([]Faults, len(addrs))
	add := func(t *map[raft.ServerAddress]LinkFault, addr string, f LinkFault) {
		if *t == nil {
			*t = map[raft.ServerAddress]LinkFault{}
		}
		(*t)[raft.ServerAddress(addr)] = f
	}
	for l, f := range links {
		add(&per[l.From].Out, addrs[l.To], f)
		add(&per[l.To].In, addrs[l.From], f)
	}
	return per
}

func (fs Faults) empty() bool { return len(fs.Out) == 0 && len(fs.In) == 0 }

// FaultFileEnv names the file a process polls for its link faults; unset (the
// default), the process has none and reads no file.
const FaultFileEnv = "QUORUMQ_FAULT_FILE"

// SetFaults replaces the link faults of this Mux (Faults{} heals every link). A
// connection that lost frames is reset once its losses stop, as a TCP stream with a
// gap could not go on: the pending calls fail at once and the next ones redial,
// rather than waiting out the transport timeout for answers that will never come.
func (m *Mux) SetFaults(fs Faults) {
	if fs.empty() {
		m.faults.Store(nil)
	} else {
		m.faults.Store(&fs)
	}
	m.mu.RLock()
	var reset []*conn
	for c := range m.conns {
		if c.outgoing && c.lost.Load() && !fs.Out[c.peer].lossy() && !fs.In[c.peer].lossy() {
			reset = append(reset, c)
		}
	}
	m.mu.RUnlock()
	for _, c := range reset {
		c.close(errLinkRestored)
	}
}

var errLinkRestored = errors.New("link fault lifted after frames were lost")

// faultOf is the fault of direction dir (Out or In) for conn c; ok is false on a
// healthy link, which costs one atomic load.
func (c *conn) faultOf(in bool) (LinkFault, bool) {
	if !c.outgoing {
		return LinkFault{}, false
	}
	fs := c.m.faults.Load()
	if fs == nil {
		return LinkFault{}, false
	}
	table := fs.Out
	if in {
		table = fs.In
	}
	f, ok := table[c.peer]
	return f, ok
}

// loses decides whether the fault f loses one frame, and remembers that the conn lost one.
func (c *conn) loses(f LinkFault) bool {
	if f.Drop || (f.Loss > 0 && rand.Float64() < f.Loss) {
		c.lost.Store(true)
		return true
	}
	return false
}

// faultOut applies the Out fault to a frame about to be queued; true means the frame
// is taken care of (lost, or queued again once its delay passed).
func (c *conn) faultOut(b []byte) bool {
	f, ok := c.faultOf(false)
	if !ok {
		return false
	}
	if c.loses(f) {
		recycleFrame(b)
		return true
	}
	if f.Delay <= 0 {
		return false
	}
	// The frame may be a pooled buffer that goes back to the pool once written.
	cp := append([]byte(nil), b...)
	recycleFrame(b)
	c.later(f.Delay, func() { c.enqueue(cp, sendNow, nil) })
	return true
}

// faultIn applies the In fault to a frame read; true means the frame is taken care of.
func (c *conn) faultIn(fr frame, deliver func(frame)) bool {
	f, ok := c.faultOf(true)
	if !ok {
		return false
	}
	if c.loses(f) {
		return true
	}
	if f.Delay <= 0 {
		return false
	}
	c.later(f.Delay, func() { deliver(fr) })
	return true
}

// later runs fn after d on the conn's one delay line, so delayed frames keep their order.
func (c *conn) later(d time.Duration, fn func()) {
	c.delayOnce.Do(func() {
		c.delayed = make(chan delayedFrame, 1024)
		go c.runDelayLine()
	})
	select {
	case c.delayed <- delayedFrame{due: time.Now().Add(d), fn: fn}:
	case <-c.closed:
	}
}

type delayedFrame struct {
	due time.Time
	fn  func()
}

func (c *conn) runDelayLine() {
	for {
		select {
		case <-c.closed:
			return
		case df := <-c.delayed:
			if wait := time.Until(df.due); wait > 0 {
				select {
				case <-c.closed:
					return
				case <-time.After(wait):
				}
			}
			df.fn()
		}
	}
}

// linkCut reports whether either direction of the link to addr loses every frame,
// for connections that faults cannot act on frame by frame (snapshot streams).
func (m *Mux) linkCut(addr raft.ServerAddress) error {
	if fs := m.faults.Load(); fs != nil && (fs.Out[addr].Drop || fs.In[addr].Drop) {
		return fmt.Errorf("transport: link to %s is cut (fault injection)", addr)
	}
	return nil
}

// faultPoll is how often a process re-reads its fault file.
const faultPoll = 20 * time.Millisecond

// watchFaultFile applies the faults written in path until the Mux closes. Each line
// is `out|in ADDRESS FAULT...` with FAULT one of `drop`, `loss=P`, `delay=DURATION`;
// the whole file is the current state, so an empty or missing file heals every link.
func (m *Mux) watchFaultFile(path string) {
	defer m.wg.Done()
	m.log.Warn("raft transport: fault injection enabled; for tests only", "file", path)
	var last []byte
	t := time.NewTicker(faultPoll)
	defer t.Stop()
	for {
		b, err := readFaultFile(path)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			m.log.Error("raft transport: fault file ignored", "error", err)
		} else if last == nil || !bytes.Equal(b, last) {
			last = append([]byte{}, b...)
			if fs, err := ParseFaults(string(b)); err != nil {
				m.log.Error("raft transport: bad fault file; faults unchanged", "error", err)
			} else {
				m.SetFaults(fs) // first: the line says they are in place
				m.log.Info("raft transport: link faults", "faults", strings.TrimSpace(strings.ReplaceAll(string(b), "\n", "; ")))
			}
		}
		select {
		case <-m.ctx.Done():
			return
		case <-t.C:
		}
	}
}

// WriteFaultFile replaces the fault file at path with content (the format of
// ParseFaults) in one rename: the poller must never read a half-written file, which
// would lift or change faults the writer never meant to (an empty read heals every link).
func WriteFaultFile(path, content string) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return err
	}
	_, err = f.WriteString(content)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("transport: write fault file: %w", err)
	}
	return nil
}

// readFaultFile reads the fault file unless someone other than this process's user
// could have written it: in a shared directory such as /tmp, another local user
// must not be able to cut this process off.
func readFaultFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != os.Getuid() {
		return nil, fmt.Errorf("%s is owned by uid %d, not by this process's user", path, st.Uid)
	}
	if fi.Mode().Perm()&0o022 != 0 {
		return nil, fmt.Errorf("%s is writable by others (mode %v)", path, fi.Mode().Perm())
	}
	return io.ReadAll(f)
}

// ParseFaults reads the fault file format of watchFaultFile.
func ParseFaults(s string) (Faults, error) {
	var fs Faults
	sc := bufio.NewScanner(strings.NewReader(s))
	for n := 1; sc.Scan(); n++ {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 || strings.HasPrefix(fields[0], "#") {
			continue
		}
		if len(fields) < 3 {
			return Faults{}, fmt.Errorf("line %d: want `out|in ADDRESS FAULT...`, got %q", n, sc.Text())
		}
		var f LinkFault
		for _, w := range fields[2:] {
			k, v, _ := strings.Cut(w, "=")
			var err error
			switch k {
			case "drop":
				f.Drop = true
			case "loss":
				f.Loss, err = strconv.ParseFloat(v, 64)
			case "delay":
				f.Delay, err = time.ParseDuration(v)
			default:
				err = errors.New("unknown fault")
			}
			if err != nil {
				return Faults{}, fmt.Errorf("line %d: %q: %v", n, w, err)
			}
		}
		table := &fs.Out
		switch fields[0] {
		case "out":
		case "in":
			table = &fs.In
		default:
			return Faults{}, fmt.Errorf("line %d: direction %q is neither out nor in", n, fields[0])
		}
		if *table == nil {
			*table = map[raft.ServerAddress]LinkFault{}
		}
		(*table)[raft.ServerAddress(fields[1])] = f
	}
	return fs, sc.Err()
}

// FormatFaults writes fs in the format ParseFaults reads.
func FormatFaults(fs Faults) string {
	var b strings.Builder
	for _, dir := range []struct {
		name  string
		table map[raft.ServerAddress]LinkFault
	}{{"out", fs.Out}, {"in", fs.In}} {
		for addr, f := range dir.table {
			if f == (LinkFault{}) {
				continue
			}
			fmt.Fprintf(&b, "%s %s", dir.name, addr)
			if f.Drop {
				b.WriteString(" drop")
			}
			if f.Loss > 0 {
				fmt.Fprintf(&b, " loss=%g", f.Loss)
			}
			if f.Delay > 0 {
				fmt.Fprintf(&b, " delay=%s", f.Delay)
			}
			b.WriteByte('\n')
		}
	}
	return b.String()
}

// faultState is the per-conn part of fault injection.
type faultState struct {
	peer      raft.ServerAddress // outgoing conns: the address dialed
	lost      atomic.Bool        // a fault lost a frame of this conn
	delayOnce sync.Once
	delayed   chan delayedFrame
}
