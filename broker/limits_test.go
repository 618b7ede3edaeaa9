package broker_test

import (
	"context"
	"errors"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/quorumq/quorumq/broker"
	"github.com/quorumq/quorumq/broker/brokerapi"
	"github.com/quorumq/quorumq/internal/brokerclient"
)

// TestBatchLimits: a produce is one Raft entry at most, so a batch too big for
// one is refused with 413 before anything is proposed, and so is a body past
// the limit; a message limit that no entry could carry is refused at start.
func TestBatchLimits(t *testing.T) {
	b, self := runBroker(t, broker.Config{ID: "b1"})
	cl := brokerclient.New(b.HTTPAddr())
	ctx := context.Background()
	if err := cl.CreatePartition(ctx, "t", 0, []brokerapi.Peer{self}); err != nil {
		t.Fatal(err)
	}
	waitLeader(t, cl, "t", 0)
	mib := strings.Repeat("x", 1<<20)
	tests := []struct {
		name string
		mib  int
		want int
	}{
		{"3 MiB", 3, http.StatusOK},
		{"5 MiB: over one entry", 5, http.StatusRequestEntityTooLarge},
		{"64 MiB: over the body limit", 64, http.StatusRequestEntityTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			msgs := make([]string, tt.mib)
			for i := range msgs {
				msgs[i] = mib
			}
			_, err := cl.Produce(ctx, "t", 0, "", 0, msgs)
			var be *brokerclient.Error
			switch {
			case tt.want == http.StatusOK && err != nil:
				t.Fatalf("produce: %v", err)
			case tt.want != http.StatusOK && (!errors.As(err, &be) || be.Code != tt.want):
				t.Fatalf("produce: %v, want %d", err, tt.want)
			}
		})
	}
	st, err := cl.Status(ctx, b.HTTPAddr(), "t", 0)
	if err != nil || st.Next != 3 {
		t.Fatalf("after the refused batches: %+v %v, want only the 3 MiB batch stored", st, err)
	}
	big := broker.Config{ID: "b2", DataDir: filepath.Join(t.TempDir(), "b2"), RaftAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0",
		MaxMessageBytes: broker.MaxMessageLimit + 1}
	if _, err := broker.New(big); err == nil {
		t.Fatal("a message limit past one Raft entry was accepted")
	}
}
