package consul_test

import (
	"testing"

	"github.com/quorumq/quorumq/internal/devtools/consulagent"
	"github.com/quorumq/quorumq/internal/devtools/consultest"
)

func TestAgentsRunSideBySide(t *testing.T) {
	a, b := consultest.Start(t), consultest.Start(t)
	if a.HTTPAddr() == b.HTTPAddr() || a.Config().ServerPort == b.Config().ServerPort || a.Config().SerfLANPort == b.Config().SerfLANPort {
		t.Fatalf("agents share ports: %+v and %+v", a.Config(), b.Config())
	}
	for _, ag := range []*consulagent.Agent{a, b} {
		if _, err := newBackend(t, ag.HTTPAddr(), ag.ManagementToken()).Healthy(testCtx(t), "x"); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Stop(); err != nil {
		t.Fatal(err)
	}
	if a.Pid() != 0 {
		t.Fatalf("pid %d after Stop", a.Pid())
	}
	if err := a.Stop(); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
	if _, err := newBackend(t, b.HTTPAddr(), b.ManagementToken()).Healthy(testCtx(t), "x"); err != nil {
		t.Fatalf("stopping one agent affected the other: %v", err)
	}
}
