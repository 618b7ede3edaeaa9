package election

import "github.com/prometheus/client_golang/prometheus"

// LeadershipChanges counts this process's members winning and losing leadership of
// their groups ("elected", "stepped_down"). It is process-wide, like StorageFaults: a
// broker's thousand groups would make a per-group series set as big as the group count,
// and a storm shows in the sum.
var LeadershipChanges = prometheus.NewCounterVec(prometheus.CounterOpts{
	Name: "quorumq_raft_leadership_changes_total",
	Help: "Times a Raft group member of this process became leader (elected) or stopped leading (stepped_down).",
}, []string{"change"})

func countLeadership(leads bool) {
	change := "stepped_down"
	if leads {
		change = "elected"
	}
	LeadershipChanges.WithLabelValues(change).Inc()
}

// Every series a dashboard shows exists from the start, at 0, rather than appearing
// with the first fault or election.
func init() {
	for _, k := range []string{FaultWALChecksum, FaultWALShortened, FaultDataChecksum, FaultRaftLogChecksum,
		FaultRaftLogShort, FaultStableChecksum, FaultLogStore} {
		StorageFaults.WithLabelValues(k)
	}
	for _, c := range []string{"elected", "stepped_down"} {
		LeadershipChanges.WithLabelValues(c)
	}
}
