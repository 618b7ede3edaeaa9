package devcluster

import (
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestPprofPorts: --pprof-port gives m1 its port, the other managers and then the
// brokers the next ones, each passed to its process as --pprof and shown in
// cluster.json; a port that leaves some server without one is refused, naming the flag.
func TestPprofPorts(t *testing.T) {
	for _, tc := range []struct {
		name              string
		port              int
		managers, brokers int
		want              map[string]string // server → its pprof address
		errNaming         string
	}{
		{name: "off", port: 0, managers: 2, brokers: 3, want: map[string]string{}},
		{name: "managers then brokers", port: 9000, managers: 2, brokers: 3, want: map[string]string{
			"m1": "127.0.0.1:9000", "m2": "127.0.0.1:9001", "b1": "127.0.0.1:9002", "b2": "127.0.0.1:9003", "b3": "127.0.0.1:9004"}},
		{name: "the last ports", port: 65533, managers: 1, brokers: 2, want: map[string]string{
			"m1": "127.0.0.1:65533", "b1": "127.0.0.1:65534", "b2": "127.0.0.1:65535"}},
		{name: "past the last port", port: 65534, managers: 1, brokers: 2, errNaming: "give one from 1 to 65533"},
		{name: "beyond every port", port: 70000, managers: 3, brokers: 5, errNaming: "give one from 1 to 65528"},
		{name: "negative", port: -1, managers: 1, brokers: 1, errNaming: "give one from 1 to 65534"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			managers := services("m", "manager", "quorumq-manager", tc.managers, 7101, 8101)
			brokers := services("b", "broker", "quorumq-broker", tc.brokers, 7201, 8201)
			err := assignPprof(tc.port, append(ptrs(managers), ptrs(brokers)...))
			if tc.errNaming != "" {
				if err == nil || !strings.Contains(err.Error(), "--pprof-port") || !strings.Contains(err.Error(), tc.errNaming) {
					t.Fatalf("--pprof-port %d: error %v, want one naming --pprof-port and %q", tc.port, err, tc.errNaming)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]string{}
			for _, s := range append(managers, brokers...) {
				args, addrs := s.command("/data")
				i := slices.Index(args, "--pprof")
				if s.pprof == "" {
					if i >= 0 || addrs["pprof"] != "" {
						t.Errorf("%s without profiles: args %q, addresses %v", s.name, args, addrs)
					}
					continue
				}
				if i < 0 || i+1 == len(args) || args[i+1] != s.pprof || addrs["pprof"] != s.pprof {
					t.Errorf("%s: args %q, addresses %v; want --pprof %s in both", s.name, args, addrs, s.pprof)
				}
				if !slices.Contains(args, filepath.Join("/data", s.name)) {
					t.Errorf("%s: args %q lack its data directory", s.name, args)
				}
				got[s.name] = s.pprof
			}
			if !maps.Equal(got, tc.want) {
				t.Fatalf("pprof addresses %v, want %v", got, tc.want)
			}
		})
	}
}
