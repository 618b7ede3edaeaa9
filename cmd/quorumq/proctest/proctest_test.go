package proctest_test

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/quorumq/quorumq/cmd/quorumq/proctest"
)

func TestVersion(t *testing.T) {
	p := proctest.Start(t, "version", "version")
	p.WaitOutput(t, "quorumq ", 30*time.Second)
	if err := p.Wait(); err != nil {
		t.Fatalf("exit: %v\n%s", err, p.Output())
	}
	if p.Pid() <= 0 {
		t.Fatalf("pid %d", p.Pid())
	}
	// Stop and Kill on an exited process are harmless.
	if err := p.Stop(); err != nil {
		t.Fatal(err)
	}
	p.Kill()
}

func TestUnknownCommandFails(t *testing.T) {
	p := proctest.Start(t, "bad", "no-such-command")
	if err := p.Wait(); err == nil {
		t.Fatal("want a non-zero exit")
	}
	if !strings.Contains(p.Output(), "unknown command") {
		t.Fatalf("output: %s", p.Output())
	}
}

func TestFreeAddr(t *testing.T) {
	addr := proctest.FreeAddr(t)
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("FreeAddr %s not usable: %v", addr, err)
	}
	l.Close()
}
