package broker_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/quorumq/quorumq/cmd/quorumq/proctest"
	"github.com/quorumq/quorumq/discovery"
	"github.com/quorumq/quorumq/internal/devtools/consulagent"
	"github.com/quorumq/quorumq/internal/devtools/consultest"
)

// TestRegistersWithConsul: `quorumq broker --consul` registers as quorumq-broker with
// its Raft and HTTP addresses in meta and a passing HTTP health check, and leaves on
// SIGTERM.
func TestRegistersWithConsul(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	agent := consultest.Start(t)
	backend := consultest.Backend(t, agent, consulagent.Reader)
	raftAddr, httpAddr := proctest.FreeAddr(t), proctest.FreeAddr(t)
	args := []string{"broker", "--id", "b1", "--data-dir", filepath.Join(t.TempDir(), "b1"), "--raft", raftAddr, "--http", httpAddr}
	p := proctest.Start(t, "b1", append(args, consultest.Flags(t, agent, discovery.ServiceBroker)...)...)
	p.WaitOutput(t, "listening", 30*time.Second)

	ctx := context.Background()
	var found discovery.Instance
	waitFor(t, "b1 healthy in consul", func() bool {
		ins, err := backend.Healthy(ctx, discovery.ServiceBroker)
		for _, i := range ins {
			if i.ID == "b1" {
				found = i
			}
		}
		return err == nil && found.ID == "b1"
	})
	if found.Meta[discovery.MetaRaftAddr] != raftAddr || found.Meta[discovery.MetaHTTPAddr] != httpAddr || found.Addr != httpAddr {
		t.Fatalf("registered %+v", found)
	}
	if err := p.Stop(); err != nil {
		t.Fatalf("broker did not exit cleanly on SIGTERM: %v", err)
	}
	waitFor(t, "b1 deregistered", func() bool {
		ins, err := backend.Healthy(ctx, discovery.ServiceBroker)
		return err == nil && len(ins) == 0
	})
}
