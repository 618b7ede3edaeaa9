package atm_test

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/quorumq/quorumq/cmd/quorumq/proctest"
)

// openPTY returns a new pseudo-terminal's master and its terminal end.
func openPTY(t *testing.T) (master, tty *os.File) {
	t.Helper()
	master, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { master.Close() })
	var unlock int32
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, master.Fd(), syscall.TIOCSPTLCK, uintptr(unsafe.Pointer(&unlock))); e != 0 {
		t.Fatalf("unlock pty: %v", e)
	}
	var n uint32
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, master.Fd(), syscall.TIOCGPTN, uintptr(unsafe.Pointer(&n))); e != 0 {
		t.Fatalf("pty number: %v", e)
	}
	tty, err = os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tty.Close() })
	return master, tty
}

// TestTerminalKeepsLogsInAFile: an ATM whose stdin is a terminal writes its log to
// <data-dir>/atm.log (and says where once), so raft's complaints about dead peers stay
// off the person's screen; and a dead peer is reported once, not on every retry.
func TestTerminalKeepsLogsInAFile(t *testing.T) {
	atms := newATMs(t, 3, 1)
	var peers []string
	for _, a := range atms {
		peers = append(peers, a.id+"="+a.raft)
	}
	for _, a := range atms {
		a.args = append(a.args, "--peers", strings.Join(peers, ","), "--log-level", "warn")
	}
	master, tty := openPTY(t)
	a1 := atms[0]
	a1.p = proctest.StartOpts(t, proctest.Opts{Name: a1.id, Args: a1.args, Stdin: tty})
	atms[1].start(t)
	atms[2].start(t)
	for _, a := range atms {
		a.waitReady(t)
	}
	logPath := filepath.Join(a1.args[4], "atm.log") // --data-dir
	a1.p.WaitOutput(t, "logs: "+logPath, 10*time.Second)

	// With both other ATMs dead, atm1 keeps trying to reach them (heartbeats as leader,
	// votes as candidate), each retry an ERROR from raft.
	atms[1].p.Kill()
	atms[2].p.Kill()
	failures := regexp.MustCompile(`msg="?(raft: )?failed to`)
	deadline := time.Now().Add(60 * time.Second)
	for {
		data, _ := os.ReadFile(logPath)
		if failures.Match(data) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no raft failure logged in %s within 60s:\n%s", logPath, data)
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(8 * time.Second) // several retry rounds, each of which used to log

	if _, err := master.WriteString("status\r"); err != nil {
		t.Fatal(err)
	}
	a1.p.WaitOutput(t, "id=atm1 state=", 30*time.Second)
	if out := a1.p.Output(); strings.Contains(out, "failed to") || strings.Contains(out, "level=ERROR") {
		t.Errorf("raft's log reached the terminal:\n%s", out)
	}
	data, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	// One line per dead peer when it stopped answering; a second one only where raft
	// named it by ID before it was seen by address.
	if n := len(failures.FindAll(data, -1)); n > 4 {
		t.Errorf("%d peer failure lines for 2 dead peers in %s:\n%s", n, logPath, data)
	}
}
