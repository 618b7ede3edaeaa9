package cores

import (
	"os"
	"runtime"
	"testing"
)

func TestShare(t *testing.T) {
	n := runtime.NumCPU()
	tests := []struct {
		procs, want int
	}{
		{1, 0},
		{n, 0},
		{n + 1, 1},
		{10 * n, 1},
	}
	for _, tt := range tests {
		if got := Share(tt.procs); got != tt.want {
			t.Errorf("Share(%d) on %d cores = %d, want %d", tt.procs, n, got, tt.want)
		}
	}
}

func TestBrokerArgs(t *testing.T) {
	many := 10 * runtime.NumCPU()
	t.Setenv(EnvVar, "2") // restored after the test
	if got := BrokerArgs(many); got != nil {
		t.Errorf("with %s set: %q, want none (the children read it)", EnvVar, got)
	}
	os.Unsetenv(EnvVar)
	if got := BrokerArgs(many); len(got) != 2 || got[0] != "--gomaxprocs" || got[1] != "1" {
		t.Errorf("%d processes: %q, want --gomaxprocs 1", many, got)
	}
	if got := BrokerArgs(1); got != nil {
		t.Errorf("1 process: %q, want none", got)
	}
}
