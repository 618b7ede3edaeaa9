package clientlib

import (
	"errors"
	"os/exec"
	"strings"
	"testing"

	"github.com/quorumq/quorumq/manager/managerapi"
)

func TestManagerCodesMapToErrors(t *testing.T) {
	for code, want := range map[string]error{
		managerapi.CodeUnknownTopic:    ErrUnknownTopic,
		managerapi.CodeUnknownProducer: ErrUnknownProducer,
		managerapi.CodeUnknownConsumer: ErrUnknownConsumer,
		managerapi.CodeTopicExists:     ErrTopicExists,
		managerapi.CodeNoMessage:       ErrNoMessage,
		managerapi.CodeInvalid:         nil,
	} {
		if err := newAPIError(404, "m", code, ""); err.Err != want || (want != nil && !errors.Is(err, want)) {
			t.Errorf("code %s maps to %v, want %v", code, err.Err, want)
		}
	}
}

// TestSDKLinksNoServer: a program using the SDK links neither Fiber nor Raft nor the
// managers' storage; the API packages it shares with the servers import only the
// standard library.
func TestSDKLinksNoServer(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, dep := range strings.Fields(string(out)) {
		for _, banned := range []string{"github.com/gofiber/", "github.com/hashicorp/raft", "github.com/uptrace/bun", "github.com/quorumq/quorumq/manager/meta"} {
			if strings.HasPrefix(dep, banned) {
				t.Errorf("clientlib links %s", dep)
			}
		}
	}
}
