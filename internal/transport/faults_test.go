package transport

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

func TestParseFaults(t *testing.T) {
	tests := []struct {
		name, in string
		want     Faults
		wantErr  bool
	}{
		{"empty heals", "", Faults{}, false},
		{"comments and blanks", "# nothing\n\n", Faults{}, false},
		{"every kind", "out 127.0.0.1:1 drop\nin 127.0.0.1:2 loss=0.5 delay=20ms\n", Faults{
			Out: map[raft.ServerAddress]LinkFault{"127.0.0.1:1": {Drop: true}},
			In:  map[raft.ServerAddress]LinkFault{"127.0.0.1:2": {Loss: 0.5, Delay: 20 * time.Millisecond}},
		}, false},
		{"no fault", "out 127.0.0.1:1\n", Faults{}, true},
		{"bad direction", "sideways 127.0.0.1:1 drop\n", Faults{}, true},
		{"unknown fault", "out 127.0.0.1:1 explode\n", Faults{}, true},
		{"bad duration", "out 127.0.0.1:1 delay=soon\n", Faults{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseFaults(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, want error: %v", err, tt.wantErr)
			}
			if tt.wantErr {
				return
			}
			if !sameFaults(got, tt.want) {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
			back, err := ParseFaults(FormatFaults(got))
			if err != nil || !sameFaults(back, got) {
				t.Fatalf("round trip: %+v, %v", back, err)
			}
		})
	}
}

func sameFaults(a, b Faults) bool {
	eq := func(x, y map[raft.ServerAddress]LinkFault) bool {
		if len(x) != len(y) {
			return false
		}
		for k, v := range x {
			if y[k] != v {
				return false
			}
		}
		return true
	}
	return eq(a.Out, b.Out) && eq(a.In, b.In)
}

// faultPair is two Muxes that answer Calls of group "g", counting the requests each
// received.
type faultPair struct {
	a, b       *Mux
	gotA, gotB atomic.Int64
}

func newFaultPair(t *testing.T) *faultPair {
	p := &faultPair{a: newMux(t), b: newMux(t)}
	p.a.Handle("g", "ping", func(context.Context, []byte) ([]byte, error) { p.gotA.Add(1); return []byte("a"), nil })
	p.b.Handle("g", "ping", func(context.Context, []byte) ([]byte, error) { p.gotB.Add(1); return []byte("b"), nil })
	return p
}

func ping(from, to *Mux, wait time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	_, err := from.Call(ctx, to.Addr(), "g", "ping", nil)
	return err
}

// cut loses the frames from sends to, as electiontest.Cluster.Cut does.
func cut(from, to *Mux, f LinkFault) {
	from.SetFaults(Faults{Out: map[raft.ServerAddress]LinkFault{to.Addr(): f}})
	to.SetFaults(Faults{In: map[raft.ServerAddress]LinkFault{from.Addr(): f}})
}

func TestOneWayCut(t *testing.T) {
	p := newFaultPair(t)
	if err := ping(p.a, p.b, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	cut(p.a, p.b, LinkFault{Drop: true})
	// a's request is lost: b never sees it.
	if err := ping(p.a, p.b, 300*time.Millisecond); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a→b call through the cut: %v, want a deadline", err)
	}
	if n := p.gotB.Load(); n != 1 {
		t.Fatalf("b served %d requests, want only the one before the cut", n)
	}
	// b's request reaches a, but a's answer is lost.
	if err := ping(p.b, p.a, 300*time.Millisecond); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("b→a call: %v, want a deadline (the answer crosses the cut)", err)
	}
	if n := p.gotA.Load(); n != 1 {
		t.Fatalf("a served %d requests, want 1: b→a still carries frames", n)
	}
	// Healed, both directions answer again without waiting out the transport timeout.
	p.a.SetFaults(Faults{})
	p.b.SetFaults(Faults{})
	if err := ping(p.a, p.b, 2*time.Second); err != nil {
		t.Fatalf("a→b after heal: %v", err)
	}
	if err := ping(p.b, p.a, 2*time.Second); err != nil {
		t.Fatalf("b→a after heal: %v", err)
	}
}

func TestLossAndDelay(t *testing.T) {
	t.Run("loss=1 loses every frame", func(t *testing.T) {
		p := newFaultPair(t)
		cut(p.a, p.b, LinkFault{Loss: 1})
		if err := ping(p.a, p.b, 300*time.Millisecond); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("call: %v, want a deadline", err)
		}
	})
	t.Run("delay holds frames back, in order", func(t *testing.T) {
		p := newFaultPair(t)
		const d = 150 * time.Millisecond
		slow := map[raft.ServerAddress]LinkFault{p.b.Addr(): {Delay: d}}
		p.a.SetFaults(Faults{Out: slow, In: slow}) // a's requests and b's answers
		for range 3 {
			start := time.Now()
			if err := ping(p.a, p.b, 10*time.Second); err != nil {
				t.Fatal(err)
			}
			// A round trip crosses the link both ways.
			if took := time.Since(start); took < 2*d {
				t.Fatalf("round trip took %v through a %v delay each way", took, d)
			}
		}
	})
}

func TestFaultFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "faults")
	t.Setenv(FaultFileEnv, path)
	var logs syncBuffer // what a's poller made of the file
	a := startMux(t, Config{BindAddr: "127.0.0.1:0", Logger: slog.New(slog.NewTextHandler(&logs, nil)), Timeout: 5 * time.Second})
	t.Setenv(FaultFileEnv, "")
	b := newMux(t)
	b.Handle("g", "ping", func(context.Context, []byte) ([]byte, error) { return nil, nil })
	write := func(s string) {
		t.Helper()
		if err := WriteFaultFile(path, s); err != nil {
			t.Fatal(err)
		}
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(30 * time.Second); !cond(); time.Sleep(faultPoll) {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
		}
	}
	write("out " + string(b.Addr()) + " drop\n")
	waitFor("the cut", func() bool { return strings.Contains(logs.String(), string(b.Addr())+" drop") })
	if err := ping(a, b, 200*time.Millisecond); err == nil {
		t.Fatal("a call went through a cut link")
	}
	write("out " + string(b.Addr()) + " nonsense\n") // refused: the cut stays
	waitFor("the bad file to be read", func() bool { return strings.Contains(logs.String(), "bad fault file") })
	if err := ping(a, b, 200*time.Millisecond); err == nil {
		t.Fatal("a bad fault file lifted the cut")
	}
	write("")
	waitFor("the heal", func() bool { return ping(a, b, 2*time.Second) == nil })
	// A file others may write is ignored: no cut. It is made so before it takes the
	// file's name, or the poller could obey it in between.
	open := path + ".tmp"
	if err := os.WriteFile(open, []byte("out "+string(b.Addr())+" drop\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(open, 0o666); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(open, path); err != nil {
		t.Fatal(err)
	}
	waitFor("the open file to be refused", func() bool { return strings.Contains(logs.String(), "writable by others") })
	if err := ping(a, b, 10*time.Second); err != nil {
		t.Fatalf("a world-writable fault file was obeyed: %v", err)
	}
}
