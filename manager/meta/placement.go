package meta

import (
	"fmt"
	"slices"
)

// GroupName is the Raft group name of a partition on the brokers.
func GroupName(topic string, index int) string { return fmt.Sprintf("p/%s/%d", topic, index) }

// Load is how many replicas and partition leaderships a broker holds.
type Load struct {
	ID       string
	Replicas int
	Leaders  int
}

// Assignment is where one new partition lives.
type Assignment struct {
	Replicas []string
	Leader   string
}

// Place spreads n new partitions with rf replicas each over the candidate brokers:
// each partition takes the rf least loaded brokers, and its leader is the one of them
// leading the fewest partitions, so both replicas and leaders stay balanced. Ties go to
// the smaller broker ID, which keeps the result deterministic. rf is capped at the
// number of candidates; no candidates gives no assignments.
func Place(candidates []Load, n, rf int) []Assignment {
	if len(candidates) == 0 || n <= 0 {
		return nil
	}
	rf = min(max(rf, 1), len(candidates))
	loads := slices.Clone(candidates)
	out := make([]Assignment, 0, n)
	for range n {
		slices.SortFunc(loads, func(a, b Load) int {
			if a.Replicas != b.Replicas {
				return a.Replicas - b.Replicas
			}
			return cmpString(a.ID, b.ID)
		})
		chosen := loads[:rf]
		lead := 0
		for i, l := range chosen {
			best := chosen[lead]
			if l.Leaders < best.Leaders || (l.Leaders == best.Leaders && l.Replicas < best.Replicas) {
				lead = i
			}
		}
		a := Assignment{Leader: chosen[lead].ID}
		for i := range chosen {
			chosen[i].Replicas++
			a.Replicas = append(a.Replicas, chosen[i].ID)
		}
		chosen[lead].Leaders++
		slices.Sort(a.Replicas)
		out = append(out, a)
	}
	return out
}

// Move replaces one replica of a partition: the replica on From is re-created on To.
type Move struct {
	Topic     string `json:"topic"`
	Partition int    `json:"partition"`
	From      string `json:"from"`
	To        string `json:"to"`
}
