package meta

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
)

func brokers(state BrokerState, ids ...string) []Broker {
	var out []Broker
	for _, id := range ids {
		out = append(out, Broker{ID: id, State: state})
	}
	return out
}

// parts makes partitions of topic t, each given as "leader:replica,replica,..." (no
// "leader:" when the leader is unknown).
func parts(rf int, specs ...string) []PlanPartition {
	var out []PlanPartition
	for i, s := range specs {
		leader, reps, ok := strings.Cut(s, ":")
		if !ok {
			leader, reps = "", s
		}
		out = append(out, PlanPartition{Partition: Partition{Topic: "t", Index: i, Replicas: strings.Split(reps, ","), Leader: leader},
			Replication: rf})
	}
	return out
}

func mv(p int, from, to string) Move { return Move{Topic: "t", Partition: p, From: from, To: to} }
func tr(p int, from, to string) Transfer {
	return Transfer{Topic: "t", Partition: p, From: from, To: to}
}

func TestPlanBalance(t *testing.T) {
	alive3 := brokers(BrokerAlive, "b1", "b2", "b3")
	cases := []struct {
		name string
		in   PlanInput
		want Plan
	}{
		{"balanced: nothing to do", PlanInput{Brokers: alive3, Partitions: parts(3, "b1:b1,b2,b3", "b2:b1,b2,b3", "b3:b1,b2,b3")}, Plan{}},
		{"dead replica replaced on the emptiest broker",
			PlanInput{Brokers: append(brokers(BrokerAlive, "b1", "b2", "b4", "b5"), brokers(BrokerDead, "b3")...),
				Partitions: parts(3, "b1:b1,b2,b3", "b2:b2,b3,b4", "b4:b1,b4,b5")},
			Plan{Moves: []Move{mv(0, "b3", "b5"), mv(1, "b3", "b1")}}},
		{"dead before decommissioning in one partition",
			PlanInput{Brokers: append(append(brokers(BrokerAlive, "b1", "b4"), brokers(BrokerDecommissioning, "b2")...), brokers(BrokerDead, "b3")...),
				Partitions: parts(3, "b1:b1,b2,b3")},
			Plan{Moves: []Move{mv(0, "b3", "b4")}}},
		{"decommissioning broker emptied",
			PlanInput{Brokers: append(brokers(BrokerAlive, "b1", "b2", "b3"), brokers(BrokerDecommissioning, "b4")...),
				Partitions: parts(3, "b4:b1,b2,b4", "b1:b1,b3,b4", "b2:b2,b3,b4")},
			Plan{Moves: []Move{mv(0, "b4", "b3"), mv(1, "b4", "b2"), mv(2, "b4", "b1")}}},
		{"under-replicated topped up", PlanInput{Brokers: alive3, Partitions: parts(3, "b1:b1", "b2:b2,b3")},
			Plan{Moves: []Move{mv(0, "", "b2"), mv(1, "", "b1")}}},
		{"nowhere to go: left as it is", PlanInput{Brokers: append(brokers(BrokerAlive, "b1", "b2"), brokers(BrokerDead, "b3")...),
			Partitions: parts(3, "b1:b1,b2,b3")}, Plan{}},
		{"repair waiting on a busy partition holds balance back",
			PlanInput{Brokers: append(brokers(BrokerAlive, "b1", "b2", "b3", "b4"), brokers(BrokerDead, "b5")...),
				Partitions: parts(3, "b1:b1,b2,b5", "b1:b1,b2,b3", "b1:b1,b2,b3"), Busy: map[string]bool{"p/t/0": true}},
			Plan{}},
		{"new broker receives replicas, followers first",
			PlanInput{Brokers: brokers(BrokerAlive, "b1", "b2", "b3", "b4"), Partitions: parts(3, "b1:b1,b2,b3", "b2:b1,b2,b3", "b3:b1,b2,b3")},
			Plan{Moves: []Move{mv(1, "b1", "b4"), mv(0, "b2", "b4")}}},
		{"moves under way count as done", PlanInput{Brokers: brokers(BrokerAlive, "b1", "b2", "b3", "b4"),
			Partitions: parts(3, "b1:b1,b2,b3", "b2:b1,b2,b3", "b3:b1,b2,b3"), InFlight: []Move{mv(1, "b1", "b4")}},
			Plan{Moves: []Move{mv(0, "b2", "b4")}}},
		{"a move under way that the placement shows is counted once", PlanInput{Brokers: brokers(BrokerAlive, "b1", "b2", "b3", "b4"),
			Partitions: parts(3, "b1:b1,b2,b3", "b2:b2,b3,b4", "b3:b1,b2,b3"), InFlight: []Move{mv(1, "b1", "b4")}},
			Plan{Moves: []Move{mv(0, "b2", "b4")}}},
		{"leaders spread once replicas are", PlanInput{Brokers: alive3, Partitions: parts(3, "b1:b1,b2,b3", "b1:b1,b2,b3", "b1:b1,b2,b3")},
			Plan{Transfers: []Transfer{tr(0, "b1", "b2"), tr(1, "b1", "b3")}}},
		{"leaders wait for replica moves under way", PlanInput{Brokers: brokers(BrokerAlive, "b1", "b2", "b3", "b4"),
			Partitions: parts(3, "b2:b2,b3,b4", "b2:b1,b2,b3", "b2:b2,b3,b4", "b3:b1,b3,b4"), InFlight: []Move{mv(0, "b3", "b1")}},
			Plan{}},
		{"unknown leaders are left alone", PlanInput{Brokers: alive3, Partitions: parts(3, "b1,b2,b3", "b1:b1,b2,b3", "b1:b1,b2,b3")},
			Plan{Transfers: []Transfer{tr(1, "b1", "b2")}}},
		{"at most Max", PlanInput{Brokers: append(brokers(BrokerAlive, "b1", "b2", "b3"), brokers(BrokerDecommissioning, "b4")...),
			Partitions: parts(3, "b4:b1,b2,b4", "b1:b1,b3,b4", "b2:b2,b3,b4"), Max: 2},
			Plan{Moves: []Move{mv(0, "b4", "b3"), mv(1, "b4", "b2")}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := PlanBalance(c.in)
			if !reflect.DeepEqual(got, c.want) {
				t.Fatalf("got %+v\nwant %+v", got, c.want)
			}
			if again := PlanBalance(c.in); !reflect.DeepEqual(again, got) {
				t.Fatalf("not deterministic: %+v then %+v", got, again)
			}
		})
	}
}

// simulate applies plans round after round (every planned move and transfer done at
// once) until the planner has nothing more to do, and returns the final partitions.
func simulate(t *testing.T, bs []Broker, ps []PlanPartition, maxPerRound int) ([]PlanPartition, int) {
	t.Helper()
	for round := 1; round <= 1000; round++ {
		plan := PlanBalance(PlanInput{Brokers: bs, Partitions: ps, Max: maxPerRound})
		if len(plan.Moves) == 0 && len(plan.Transfers) == 0 {
			return ps, round
		}
		for _, m := range plan.Moves {
			p := &ps[m.Partition]
			if m.From == "" {
				p.Replicas = append(p.Replicas, m.To)
			} else {
				p.Replicas[slices.Index(p.Replicas, m.From)] = m.To
				if p.Leader == m.From {
					p.Leader = p.Replicas[0]
				}
			}
			if len(p.Replicas) > p.Replication || slices.Contains(p.Replicas[:len(p.Replicas)-1], p.Replicas[len(p.Replicas)-1]) {
				t.Fatalf("round %d: move %+v leaves %+v", round, m, p)
			}
			slices.Sort(p.Replicas)
		}
		for _, x := range plan.Transfers {
			p := &ps[x.Partition]
			if p.Leader != x.From || !p.Has(x.To) {
				t.Fatalf("round %d: transfer %+v of %+v", round, x, p)
			}
			p.Leader = x.To
		}
	}
	t.Fatal("the planner never settled")
	return nil, 0
}

// The issue's case: after all brokers restarted, b1 and b4 held nothing and one broker
// led 48 of 52 partitions. The plans bring every broker within one of the even share,
// replicas and leaders alike, and keep every partition at 3 replicas.
func TestPlanBalanceSettles(t *testing.T) {
	cases := []struct {
		name    string
		brokers []Broker
		spec    func(i int) string
		n       int
	}{
		{"restart left two brokers empty", brokers(BrokerAlive, "b1", "b2", "b3", "b4", "b5"), func(i int) string {
			if i < 48 {
				return "b2:b2,b3,b5"
			}
			return "b3:b2,b3,b5"
		}, 52},
		{"decommission and a dead broker", append(append(brokers(BrokerAlive, "b1", "b2", "b3", "b4"), brokers(BrokerDecommissioning, "b5")...), brokers(BrokerDead, "b6")...),
			func(i int) string { return []string{"b5:b5,b6,b1", "b6:b2,b5,b6", "b1:b1,b2,b3"}[i%3] }, 90},
		{"under-replicated on a new cluster", brokers(BrokerAlive, "b1", "b2", "b3", "b4", "b5", "b6", "b7"),
			func(int) string { return "b1:b1" }, 40},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var specs []string
			for i := range c.n {
				specs = append(specs, c.spec(i))
			}
			ps, rounds := simulate(t, c.brokers, parts(3, specs...), 8)
			reps, leads := map[string]int{}, map[string]int{}
			for _, p := range ps {
				if len(p.Replicas) != 3 {
					t.Fatalf("partition %+v has %d replicas", p, len(p.Replicas))
				}
				for _, r := range p.Replicas {
					reps[r]++
				}
				leads[p.Leader]++
			}
			alive := 0
			for _, b := range c.brokers {
				if b.State == BrokerAlive {
					alive++
				}
			}
			for _, b := range c.brokers {
				if b.State != BrokerAlive {
					if reps[b.ID] != 0 {
						t.Fatalf("%s %s still holds %d replicas", b.State, b.ID, reps[b.ID])
					}
					continue
				}
				evenR, evenL := float64(3*c.n)/float64(alive), float64(c.n)/float64(alive)
				if d := float64(reps[b.ID]) - evenR; d > 1 || d < -1 {
					t.Errorf("%s holds %d replicas, even is %.1f", b.ID, reps[b.ID], evenR)
				}
				if d := float64(leads[b.ID]) - evenL; d > 1 || d < -1 {
					t.Errorf("%s leads %d partitions, even is %.1f", b.ID, leads[b.ID], evenL)
				}
			}
			t.Logf("settled after %d rounds: replicas %v, leaders %v", rounds, reps, leads)
		})
	}
}

func ExamplePlanBalance() {
	plan := PlanBalance(PlanInput{
		Brokers: []Broker{{ID: "b1", State: BrokerAlive}, {ID: "b2", State: BrokerAlive}, {ID: "b3", State: BrokerDead}, {ID: "b4", State: BrokerAlive}},
		Partitions: []PlanPartition{{Partition: Partition{Topic: "orders", Index: 0, Replicas: []string{"b1", "b2", "b3"}, Leader: "b1"},
			Replication: 3}},
	})
	fmt.Println(plan.Moves)
	// Output: [{orders 0 b3 b4}]
}
