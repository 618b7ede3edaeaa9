package manager

import (
	"context"
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/quorumq/quorumq/manager/managerapi"
	"github.com/quorumq/quorumq/manager/meta"
)

// The mover is the write manager's worker for replica moves and leadership transfers.
// The health loop only records what discovery says and kicks it; each round the mover
// asks the planner (meta.PlanBalance) for as many moves as it has free slots and runs
// them in parallel; the slots grow while replica moves succeed and shrink when they
// fail (see minSlots). A failed move is retried with a growing pause, and logged when it
// starts failing, when its failure changes, and when it succeeds again: never once per
// attempt.
const (
	// DefaultMaxMoves bounds the moves and transfers under way at once.
	DefaultMaxMoves = 32
	// maxTransfers bounds the leadership transfers among them. Each is an election, and
	// the planner counts leaders from a survey that takes tens of seconds with 1,000+
	// partitions per broker: 32 at a time made 2,617 transfers (and 1,690 failed ones,
	// to brokers that led already) while 1,900 partitions were created, and the
	// elections they cost kept new partitions leaderless for minutes.
	maxTransfers = 4
	// minSlots is the fewest moves the mover keeps in flight when moves fail: it starts
	// there, takes one more slot per move done, up to MaxMoves, and halves its slots at
	// each failure. With 1,000 partitions on a loaded 2-core machine, 32 moves from the
	// start (each a new Raft group catching up) cost partitions their leaders, and the
	// moves then failed for want of a leader.
	minSlots  = 4
	planEvery = time.Second
	// surveyEvery is how often every alive broker's replicas are listed: the live
	// leaders, replicas missing where the metadata places them, and stale ones.
	surveyEvery = 5 * time.Second
	moveTimeout = 2 * time.Minute
	// settle is how long a group is left alone after a move or transfer of it: the
	// leaders and loads the planner sees catch up first, so that it never bounces a
	// group back and forth faster than that.
	settle       = 5 * time.Second
	retryFirst   = time.Second
	retryLongest = 30 * time.Second
)

var errLeadershipEnded = errors.New("this manager is no longer the write manager")

// job is one move (Transfer nil) or one leadership transfer.
type job struct {
	move     meta.Move
	transfer *meta.Transfer
}

func (j job) group() string {
	if j.transfer != nil {
		return meta.GroupName(j.transfer.Topic, j.transfer.Partition)
	}
	return meta.GroupName(j.move.Topic, j.move.Partition)
}

func (j job) ends() (from, to string) {
	if j.transfer != nil {
		return j.transfer.From, j.transfer.To
	}
	return j.move.From, j.move.To
}

// failing is a group whose last attempt failed: when to try again, and the failure
// last logged.
type failing struct {
	attempts int
	next     time.Time
	logged   string
}

type mover struct {
	m     *Manager
	slots int // the bound: MaxMoves
	kick  chan struct{}
	wg    sync.WaitGroup

	mu       sync.Mutex
	limit    int            // moves allowed in flight now, minSlots to slots
	running  map[string]job // by group
	fixing   map[string]int // groups a survey's fixes are changing (survey.go)
	failures map[string]*failing
	counts   map[string]*managerapi.MoveCounts // by broker
	leaders  map[string]string                 // group → the leader its replicas named at the last survey
	// changed is when a move or transfer of a group last succeeded: a survey that
	// listed the replicas before then knows an old leader.
	changed  map[string]time.Time
	surveyed bool // a survey is under way
	// nextSurvey is when the periodic survey may run again (startSurvey).
	nextSurvey time.Time
}

func newMover(m *Manager) *mover {
	slots := m.cfg.MaxMoves
	if slots <= 0 {
		slots = DefaultMaxMoves
	}
	return &mover{m: m, slots: slots, limit: min(minSlots, slots), kick: make(chan struct{}, 1), running: map[string]job{}, fixing: map[string]int{},
		failures: map[string]*failing{}, counts: map[string]*managerapi.MoveCounts{}, leaders: map[string]string{},
		changed: map[string]time.Time{}}
}

// wake asks for a round now.
func (mv *mover) wake() {
	select {
	case mv.kick <- struct{}{}:
	default:
	}
}

// run plans and starts moves until ctx ends (the leadership is lost), then waits for
// the moves under way, which ctx cancels.
func (mv *mover) run(ctx context.Context) {
	defer mv.wg.Wait()
	plan := time.NewTicker(planEvery)
	defer plan.Stop()
	survey := time.NewTicker(surveyEvery)
	defer survey.Stop()
	mv.startSurvey(ctx)
	for {
		mv.round(ctx)
		select {
		case <-ctx.Done():
			return
		case now := <-survey.C:
			mv.mu.Lock()
			due := !now.Before(mv.nextSurvey)
			mv.mu.Unlock()
			if due {
				mv.startSurvey(ctx)
			}
		case <-plan.C:
		case <-mv.kick:
		}
	}
}

// round releases emptied decommissioning brokers and starts the planner's next moves.
func (mv *mover) round(ctx context.Context) {
	mv.mu.Lock()
	in := meta.PlanInput{Max: mv.limit - len(mv.running), Busy: map[string]bool{}}
	transfers := 0
	for g, j := range mv.running {
		if j.transfer != nil {
			in.Busy[g] = true
			transfers++
		} else {
			in.InFlight = append(in.InFlight, j.move)
		}
	}
	now := time.Now()
	for g, f := range mv.failures {
		if now.Before(f.next) {
			in.Busy[g] = true
		}
	}
	for g, at := range mv.changed {
		if now.Sub(at) < settle {
			in.Busy[g] = true
		}
	}
	for g := range mv.fixing {
		in.Busy[g] = true
	}
	mv.mu.Unlock()
	// The metadata is read after the moves under way: a move that ends in between is
	// then seen as done, never as not started.
	var placed meta.PlanInput
	var emptied []string
	mv.m.store.Read(func(s *meta.State) {
		placed = s.PlanInput()
		for _, b := range s.BrokerList() {
			if b.State == meta.BrokerDecommissioning && b.Replicas == 0 {
				emptied = append(emptied, b.ID)
			}
		}
	})
	for _, id := range emptied {
		if _, err := mv.m.apply(ctx, meta.ReleaseBroker{ID: id}); err == nil {
			mv.m.log.Info("broker released", "broker", id)
		}
	}
	if in.Max <= 0 {
		return
	}
	in.Brokers, in.Partitions = placed.Brokers, placed.Partitions
	mv.mu.Lock()
	for i := range in.Partitions {
		p := &in.Partitions[i]
		if l, ok := mv.leaders[p.GroupName()]; ok && p.Has(l) {
			p.Leader = l
		}
	}
	mv.mu.Unlock()
	plan := meta.PlanBalance(in)
	for _, m := range plan.Moves {
		mv.start(ctx, job{move: m})
	}
	// The transfers left out are planned again next round, from fresher leaders.
	for _, t := range plan.Transfers[:min(len(plan.Transfers), max(maxTransfers-transfers, 0))] {
		mv.start(ctx, job{transfer: &t})
	}
}

func (mv *mover) countsOf(id string) *managerapi.MoveCounts {
	c := mv.counts[id]
	if c == nil {
		c = &managerapi.MoveCounts{}
		mv.counts[id] = c
	}
	return c
}

// each runs fn on the counts of the brokers a replica move touches (leadership
// transfers are not counted).
func (mv *mover) each(j job, fn func(*managerapi.MoveCounts)) {
	if j.transfer != nil {
		return
	}
	from, to := j.ends()
	for _, id := range []string{from, to} {
		if id != "" {
			fn(mv.countsOf(id))
		}
	}
}

func (mv *mover) start(ctx context.Context, j job) {
	g := j.group()
	mv.mu.Lock()
	mv.running[g] = j
	mv.each(j, func(c *managerapi.MoveCounts) { c.InFlight++ })
	mv.mu.Unlock()
	movesInFlight.Inc()
	mv.wg.Add(1)
	go func() {
		defer mv.wg.Done()
		jctx, cancel := context.WithTimeout(ctx, moveTimeout)
		start := time.Now()
		err := mv.m.carryOut(jctx, j)
		cancel()
		movesInFlight.Dec()
		if ctx.Err() != nil {
			// The leadership ended: not this move's failure, and not worth a line each;
			// the next write manager plans again from the metadata.
			err = errLeadershipEnded
		}
		mv.finish(j, err, time.Since(start))
		mv.wake()
	}()
}

// finish records a job's outcome and logs what changed.
func (mv *mover) finish(j job, err error, took time.Duration) {
	g := j.group()
	mv.mu.Lock()
	defer mv.mu.Unlock()
	delete(mv.running, g)
	mv.each(j, func(c *managerapi.MoveCounts) {
		c.InFlight--
		switch {
		case err == nil:
			c.Done++
		case !errors.Is(err, errMoveStale) && !errors.Is(err, errLeadershipEnded):
			c.Failed++
		}
	})
	log := mv.m.log.With("group", g, "job", describe(j))
	f := mv.failures[g]
	switch {
	case err == nil:
		if j.transfer == nil {
			mv.limit = min(mv.limit+1, mv.slots)
		}
		mv.changed[g] = time.Now()
		if _, to := j.ends(); j.transfer != nil {
			mv.leaders[g] = to
		} else {
			delete(mv.leaders, g) // the metadata's leader, which the move recorded, until the next survey
		}
		movesTotal.WithLabelValues("done").Inc()
		if f != nil {
			log.Info("move succeeded after failing", "attempts", f.attempts+1, "took", took.Round(time.Millisecond))
			delete(mv.failures, g)
		} else {
			log.Info("move done", "took", took.Round(time.Millisecond))
		}
	case errors.Is(err, errMoveStale):
		delete(mv.failures, g)
	case errors.Is(err, errLeadershipEnded):
	default:
		if j.transfer == nil {
			mv.limit = max(mv.limit/2, min(minSlots, mv.slots))
		}
		movesTotal.WithLabelValues("failed").Inc()
		if f == nil {
			f = &failing{}
			mv.failures[g] = f
		}
		f.attempts++
		f.next = time.Now().Add(min(retryFirst<<min(f.attempts-1, 5), retryLongest))
		if kind := failureKind(err); kind != f.logged {
			f.logged = kind
			log.Warn("move failed; retrying with backoff", "attempts", f.attempts, "err", err)
		}
	}
}

// failureKind is an error's message without its numbers (indexes, ports, durations),
// so that a retry failing the same way is not logged again.
func failureKind(err error) string {
	return strings.Map(func(r rune) rune {
		if r >= '0' && r <= '9' {
			return -1
		}
		return r
	}, err.Error())
}

func describe(j job) string {
	from, to := j.ends()
	switch {
	case j.transfer != nil:
		return "leadership " + from + "→" + to
	case from == "":
		return "add replica on " + to
	}
	return "move replica " + from + "→" + to
}

// progress is the mover's counts per broker, with Pending from the metadata: the
// replicas on dead and decommissioning brokers that are not moving yet.
func (mv *mover) progress(s *meta.State) map[string]managerapi.MoveCounts {
	out := pendingMoves(s)
	mv.mu.Lock()
	defer mv.mu.Unlock()
	for id, c := range mv.counts {
		pending := out[id].Pending
		for _, j := range mv.running {
			if j.transfer == nil && j.move.From == id {
				pending--
			}
		}
		out[id] = managerapi.MoveCounts{Pending: max(pending, 0), InFlight: c.InFlight, Done: c.Done, Failed: c.Failed}
	}
	return out
}

// pendingMoves counts, per dead or decommissioning broker, the replicas it still holds:
// every one of them is to move.
func pendingMoves(s *meta.State) map[string]managerapi.MoveCounts {
	out := map[string]managerapi.MoveCounts{}
	for _, b := range s.BrokerList() {
		if b.State == meta.BrokerDead || b.State == meta.BrokerDecommissioning {
			out[b.ID] = managerapi.MoveCounts{Pending: b.Replicas}
		}
	}
	return out
}

// wakeMover starts a round of the mover now, when this manager is the write manager.
func (m *Manager) wakeMover() {
	if mv := m.mover.Load(); mv != nil {
		mv.wake()
	}
}
