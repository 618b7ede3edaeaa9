package broker

import (
	"testing"

	"github.com/quorumq/quorumq/broker/brokerapi"
)

// TestHeir: every broker names the same heir for a partition, never the departed
// leader, and the heirs of many partitions are spread over the survivors.
func TestHeir(t *testing.T) {
	peers := func(ids ...string) map[string]brokerapi.Peer {
		m := map[string]brokerapi.Peer{}
		for _, id := range ids {
			m[id] = brokerapi.Peer{ID: id}
		}
		return m
	}
	tests := []struct {
		name     string
		peers    map[string]brokerapi.Peer
		departed string
		want     []string // possible heirs
	}{
		{"three members", peers("b1", "b2", "b3"), "b1", []string{"b2", "b3"}},
		{"departed unknown", peers("b1", "b2"), "b9", []string{"b1", "b2"}},
		{"alone", peers("b1"), "b1", []string{""}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wins := map[string]int{}
			for p := range 100 {
				r := &replica{group: groupName("t", p), peers: tt.peers}
				h := r.heir(tt.departed)
				if again := (&replica{group: r.group, peers: tt.peers}).heir(tt.departed); again != h {
					t.Fatalf("%s: heir %q, then %q", r.group, h, again)
				}
				wins[h]++
			}
			for _, w := range tt.want {
				if wins[w] == 0 {
					t.Errorf("%q never heir: %v", w, wins)
				}
			}
			if len(wins) != len(tt.want) {
				t.Errorf("heirs %v, want only %v", wins, tt.want)
			}
		})
	}
}
