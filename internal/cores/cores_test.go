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

func TestGoEnv(t *testing.T) {
	many := 10 * runtime.NumCPU()
	for _, tc := range []struct {
		env   string // "-" unset
		procs int
		want  string // "" none
	}{
		{"-", many, "GOMAXPROCS=1"},
		{"-", 1, ""},
		{"2", 1, "GOMAXPROCS=2"},
		{"0", many, ""},
	} {
		t.Setenv(EnvVar, tc.env) // restored after the test
		if tc.env == "-" {
			os.Unsetenv(EnvVar)
		}
		got := GoEnv(tc.procs)
		if (tc.want == "" && got != nil) || (tc.want != "" && (len(got) != 1 || got[0] != tc.want)) {
			t.Errorf("%s=%s, %d processes: %q, want %q", EnvVar, tc.env, tc.procs, got, tc.want)
		}
	}
}
