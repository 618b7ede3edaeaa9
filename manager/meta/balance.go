package meta

import (
	"maps"
	"slices"
)

// The write manager's mover asks PlanBalance what to do next, every round, with the
// placement as it stands and the moves it is carrying out. The planner decides; its
// moves are carried out by the mover and recorded (MoveReplica, AddReplica,
// SetLeader) only once done, so Apply never plans anything.

// Transfer hands a partition's leadership from one of its replicas to another.
type Transfer struct {
	Topic     string `json:"topic"`
	Partition int    `json:"partition"`
	From      string `json:"from"`
	To        string `json:"to"`
}

// PlanPartition is a partition as the planner sees it: Leader is the live leader
// ("" when unknown), Replication what its topic asks for.
type PlanPartition struct {
	Partition
	Replication int
}

// PlanInput is the placement the planner works from.
type PlanInput struct {
	Brokers    []Broker
	Partitions []PlanPartition
	// InFlight are the replica moves under way: their partitions are left alone and
	// the loads count them as done (those the partitions already show are done).
	InFlight []Move
	// Busy are groups (GroupName) to leave alone: a transfer under way, or a failed
	// move waiting to be retried.
	Busy map[string]bool
	// Max bounds the moves and the transfers planned (0: no bound).
	Max int
}

// Plan is what to do next, in the order to do it.
type Plan struct {
	Moves     []Move // From "" adds a replica to an under-replicated partition
	Transfers []Transfer
}

// PlanBalance decides, deterministically, the next moves:
//  1. repair: a replica on a dead broker is replaced, then one on a decommissioning (or
//     unknown) broker, and a partition short of its replication factor gets one more;
//  2. replica balance, once nothing needs repair: a replica moves from the alive broker
//     holding the most to one holding at least two fewer;
//  3. leader balance, once no replica moves at all: leadership goes from the broker
//     leading the most partitions to a replica leading at least two fewer, so that every
//     alive broker ends within one of the even share.
//
// New replicas go to the alive broker holding the fewest (ties: the smaller id). One
// move per partition at a time; a partition moving or busy is left alone.
func PlanBalance(in PlanInput) Plan {
	b := newBalancer(in)
	var out Plan
	needRepair := b.repair(&out)
	if needRepair || len(out.Moves) > 0 {
		return out
	}
	b.spreadReplicas(&out)
	if len(out.Moves) > 0 || len(in.InFlight) > 0 {
		return out
	}
	b.spreadLeaders(&out)
	return out
}

type balancer struct {
	in       PlanInput
	state    map[string]BrokerState
	alive    []string       // alive broker ids, sorted
	replicas map[string]int // alive broker → replicas, counting moves under way as done
	leaders  map[string]int // alive broker → partitions it leads
	left     map[string]bool
	planned  int
}

func newBalancer(in PlanInput) *balancer {
	b := &balancer{in: in, state: map[string]BrokerState{}, replicas: map[string]int{}, leaders: map[string]int{},
		left: maps.Clone(in.Busy)}
	if b.left == nil {
		b.left = map[string]bool{}
	}
	for _, br := range in.Brokers {
		b.state[br.ID] = br.State
		if br.State == BrokerAlive {
			b.alive = append(b.alive, br.ID)
			b.replicas[br.ID], b.leaders[br.ID] = 0, 0
		}
	}
	slices.Sort(b.alive)
	for _, p := range in.Partitions {
		for _, r := range p.Replicas {
			if _, ok := b.replicas[r]; ok {
				b.replicas[r]++
			}
		}
		if _, ok := b.leaders[p.Leader]; ok {
			b.leaders[p.Leader]++
		}
	}
	placed := map[string]Partition{}
	for _, p := range in.Partitions {
		placed[p.GroupName()] = p.Partition
	}
	for _, mv := range in.InFlight {
		g := GroupName(mv.Topic, mv.Partition)
		b.left[g] = true
		if p := placed[g]; p.Has(mv.To) && !p.Has(mv.From) {
			continue // recorded already: the placement counts it
		}
		if _, ok := b.replicas[mv.From]; ok {
			b.replicas[mv.From]--
		}
		if _, ok := b.replicas[mv.To]; ok {
			b.replicas[mv.To]++
		}
	}
	return b
}

func (b *balancer) full() bool { return b.in.Max > 0 && b.planned >= b.in.Max }

// take reports whether p may be planned for, and claims it if so.
func (b *balancer) take(p Partition) bool {
	g := p.GroupName()
	if b.left[g] {
		return false
	}
	b.left[g] = true
	b.planned++
	return true
}

// target is the alive broker not holding p with the fewest replicas, "" if none.
func (b *balancer) target(p Partition) string {
	best := ""
	for _, id := range b.alive {
		if !p.Has(id) && (best == "" || b.replicas[id] < b.replicas[best]) {
			best = id
		}
	}
	return best
}

// repair plans the moves that restore replication and empty dead and decommissioning
// brokers. It reports whether any partition needs one, planned now or not.
func (b *balancer) repair(out *Plan) bool {
	need := false
	for _, p := range b.in.Partitions {
		from, ok := b.misplaced(p)
		if !ok {
			continue
		}
		need = true
		if b.full() || b.left[p.GroupName()] {
			continue
		}
		to := b.target(p.Partition)
		if to == "" || !b.take(p.Partition) {
			continue
		}
		b.replicas[to]++
		out.Moves = append(out.Moves, Move{Topic: p.Topic, Partition: p.Index, From: from, To: to})
	}
	return need
}

// misplaced names the replica of p to move first ("" to add one) and whether p needs
// a move at all: a replica on a dead broker before one on any other broker that is not
// alive, and those before a missing replica.
func (b *balancer) misplaced(p PlanPartition) (string, bool) {
	other := ""
	for _, r := range p.Replicas {
		switch b.state[r] {
		case BrokerAlive:
		case BrokerDead:
			return r, true
		default:
			if other == "" {
				other = r
			}
		}
	}
	if other != "" {
		return other, true
	}
	return "", len(p.Replicas) < p.Replication
}

// byLoad is ids sorted by load, ascending or descending, ties by id.
func byLoad(ids []string, load map[string]int, desc bool) []string {
	out := slices.Clone(ids)
	slices.SortStableFunc(out, func(x, y string) int {
		if desc {
			return load[y] - load[x]
		}
		return load[x] - load[y]
	})
	return out
}

// spreadReplicas moves replicas from the fullest alive brokers to the emptiest until
// no two differ by more than one, or no move can narrow the gap. A replica that is not
// its partition's leader moves first, so that leadership changes less.
func (b *balancer) spreadReplicas(out *Plan) {
	out.Moves = append(out.Moves, b.spread(b.replicas, func(from, to string) (Move, bool) {
		for _, leaderToo := range []bool{false, true} {
			for _, p := range b.in.Partitions {
				if b.left[p.GroupName()] || !p.Has(from) || p.Has(to) || (p.Leader == from) != leaderToo {
					continue
				}
				return Move{Topic: p.Topic, Partition: p.Index, From: from, To: to}, true
			}
		}
		return Move{}, false
	})...)
}

// spreadLeaders transfers leadership from the alive brokers leading the most
// partitions to replicas leading at least two fewer.
func (b *balancer) spreadLeaders(out *Plan) {
	for _, mv := range b.spread(b.leaders, func(from, to string) (Move, bool) {
		for _, p := range b.in.Partitions {
			if p.Leader == from && p.Has(to) && !b.left[p.GroupName()] {
				return Move{Topic: p.Topic, Partition: p.Index, From: from, To: to}, true
			}
		}
		return Move{}, false
	}) {
		out.Transfers = append(out.Transfers, Transfer(mv))
	}
}

// spread takes, one at a time, the moves find offers between brokers whose loads
// differ by two or more, counting each in load, until none narrows a gap.
func (b *balancer) spread(load map[string]int, find func(from, to string) (Move, bool)) []Move {
	var out []Move
	for !b.full() {
		mv, ok := b.nextSpread(find, load)
		if !ok {
			break
		}
		b.take(Partition{Topic: mv.Topic, Index: mv.Partition})
		load[mv.From]--
		load[mv.To]++
		out = append(out, mv)
	}
	return out
}

// nextSpread finds, for the pairs of alive brokers whose loads differ by two or more
// (the fullest first, each with the emptiest first), the first move find offers.
func (b *balancer) nextSpread(find func(from, to string) (Move, bool), load map[string]int) (Move, bool) {
	desc, asc := byLoad(b.alive, load, true), byLoad(b.alive, load, false)
	for _, from := range desc {
		for _, to := range asc {
			if load[from]-load[to] < 2 {
				break
			}
			if mv, ok := find(from, to); ok {
				return mv, true
			}
		}
	}
	return Move{}, false
}
