package election

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"

	"github.com/quorumq/quorumq/internal/transport"
)

// Node is one member of one Raft group.
type Node struct {
	cfg    Config
	log    *slog.Logger
	logs   raft.LogStore
	stable raft.StableStore
	// rawStable is the store behind the checked stable store (checked.go).
	rawStable raft.StableStore
	snaps     *trackedSnapshots
	fsm       *trackedFSM
	trans     *transport.GroupTransport
	closer    func() error // closes the stores this node opened

	// raft is set once raft runs; RPC handlers registered before that answer "pending".
	raft  atomic.Pointer[raft.Raft]
	inst  atomic.Pointer[instance] // raft's current run (restart.go)
	runMu sync.Mutex               // held while raft starts or stops
	// readyTerm is the last term in which this node, as leader, saw an entry of its own
	// term committed; until then its commit index may trail what earlier leaders committed.
	readyTerm atomic.Uint64
	rec       recovery
	badEntry  atomic.Uint64  // the last damaged log entry logDamage handled
	bg        sync.WaitGroup // keepWatermark and restart, which use the stores

	ctx    context.Context // ends at Close, for background work
	cancel context.CancelFunc

	mu        sync.Mutex
	subs      []chan bool
	isLeader  bool
	closeOnce sync.Once
	closeErr  error
	done      chan struct{}
}

// Open starts this member of cfg.Group. With Raft state in the stores it just starts;
// otherwise it bootstraps or joins as Config describes. It returns once raft runs, which
// is not necessarily once there is a leader (see WaitLeader).
func Open(ctx context.Context, cfg Config) (*Node, error) {
	if cfg.Group == "" || cfg.ID == "" || cfg.Mux == nil || cfg.FSM == nil {
		return nil, errors.New("election: Config needs Group, ID, Mux and FSM")
	}
	if cfg.BootstrapExpect > 0 && cfg.Discover == nil {
		return nil, errors.New("election: Config.BootstrapExpect needs Config.Discover")
	}
	if cfg.Timing == (Timing{}) {
		cfg.Timing = DefaultTiming()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	n := &Node{cfg: cfg, done: make(chan struct{}), log: cfg.Logger.With("group", cfg.Group, "node", cfg.ID)}
	n.ctx, n.cancel = context.WithCancel(context.Background())
	if err := n.openStores(); err != nil {
		return nil, err
	}
	var err error
	if n.trans, err = cfg.Mux.Transport(cfg.Group); err != nil {
		n.closer()
		return nil, fmt.Errorf("election: group %q transport: %w", cfg.Group, err)
	}
	n.trans.SetElectionGate(n.sitOut)
	n.trans.SetStandGate(n.canStand)
	n.trans.SetHeartbeatProbe(n.heartbeatInMemory)
	n.registerHandlers()
	err = n.checkStores()
	if err == nil {
		err = n.start(ctx)
	}
	if err != nil {
		n.cancel()
		n.unregisterHandlers()
		n.trans.Close()
		n.closer()
		return nil, err
	}
	n.startRecovery()
	return n, nil
}

func (n *Node) openStores() error {
	c := n.cfg
	n.closer = func() error { return nil }
	n.logs, n.stable = c.LogStore, c.StableStore
	if c.StableStore != nil {
		// Sealed like the node's own (checked.go): a given store may be bolt too (the
		// broker's raft.db).
		_, err := c.StableStore.Get(keySealed)
		n.stable = &checkedStable{StableStore: c.StableStore, strict: err == nil, damaged: n.ReportDamage}
		n.rawStable = c.StableStore
	}
	snaps := c.SnapshotStore
	if (n.logs == nil || n.stable == nil || snaps == nil) && c.DataDir == "" {
		return errors.New("election: Config needs DataDir unless all three stores are given")
	}
	if n.logs == nil || n.stable == nil {
		if err := os.MkdirAll(c.DataDir, 0o755); err != nil {
			return fmt.Errorf("election: %w", err)
		}
		bolt, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(c.DataDir, "raft.db")})
		if err != nil {
			return fmt.Errorf("election: open %s: %w", filepath.Join(c.DataDir, "raft.db"), err)
		}
		n.closer = bolt.Close
		if n.rawStable == nil {
			n.rawStable = bolt
		}
		_, err = n.rawStable.Get(keySealed)
		sealed := err == nil
		if n.logs == nil {
			n.logs = &checkedLogs{LogStore: bolt, strict: sealed, damaged: n.logDamage}
		}
		if n.stable == nil {
			n.stable = &checkedStable{StableStore: bolt, strict: sealed, damaged: n.ReportDamage}
		}
	}
	if snaps == nil {
		fs, err := raft.NewFileSnapshotStoreWithLogger(c.DataDir, 2, newHCLog(n.log))
		if err != nil {
			n.closer()
			return fmt.Errorf("election: snapshot store: %w", err)
		}
		snaps = fs
	}
	n.snaps = &trackedSnapshots{SnapshotStore: snaps}
	n.fsm = newTrackedFSM(n.cfg.FSM, n.snaps, n.stopApplying)
	n.fsm.snapshotBytes = n.cfg.Timing.SnapshotBytes
	if n.cfg.Timing.SnapshotGap > 0 {
		n.fsm.snapshotEntries, n.fsm.snapshotGap = n.cfg.Timing.SnapshotThreshold, n.cfg.Timing.SnapshotGap
	}
	n.fsm.snapshot = n.snapshot
	return nil
}

func (n *Node) raftConfig() *raft.Config {
	t := n.cfg.Timing
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(n.cfg.ID)
	rc.HeartbeatTimeout = t.HeartbeatTimeout
	rc.ElectionTimeout = t.ElectionTimeout
	rc.LeaderLeaseTimeout = t.LeaderLeaseTimeout
	rc.CommitTimeout = t.CommitTimeout
	if t.SnapshotThreshold > 0 {
		rc.SnapshotThreshold = t.SnapshotThreshold
	}
	if t.SnapshotInterval > 0 {
		rc.SnapshotInterval = t.SnapshotInterval
	}
	if t.TrailingLogs > 0 {
		rc.TrailingLogs = t.TrailingLogs
	}
	// Concurrent Applys share one disk write (measured: 14,000 → 18,000 entries/s).
	rc.BatchApplyCh = true
	rc.Logger = newHCLog(n.log)
	return rc
}

// snapshot takes a snapshot now; there being nothing new, or raft shutting down, is
// not worth a log line.
func (n *Node) snapshot() {
	r := n.Raft()
	if r == nil {
		return
	}
	err := r.Snapshot().Error()
	if err != nil && !errors.Is(err, raft.ErrNothingNewToSnapshot) && !errors.Is(err, raft.ErrRaftShutdown) {
		n.log.Warn("snapshot failed", "error", err)
	}
}

// start decides between restart, bootstrap and join, then runs raft.
func (n *Node) start(ctx context.Context) error {
	has, err := raft.HasExistingState(n.logs, n.stable, n.snaps)
	if err != nil {
		return fmt.Errorf("election: read raft state: %w", err)
	}
	var boot []Peer
	if !has {
		if boot, err = n.membership(ctx); err != nil {
			return err
		}
	}
	if boot != nil {
		if err := n.bootstrapStores(raftConfiguration(boot)); err != nil {
			return fmt.Errorf("election: bootstrap: %w", err)
		}
		n.log.Info("bootstrapped group", "members", boot)
	}
	if err := n.run(); err != nil {
		return err
	}
	if _, ok := n.logs.(DamageReporter); !ok {
		n.bg.Add(1)
		go n.keepWatermark()
	}
	if has {
		go n.announceAddress()
	}
	return nil
}

// bootstrapStores writes what raft.BootstrapCluster writes, the term 1 and the
// configuration as entry 1, before raft runs, and both at once: raft writes them one
// after the other, and where they are different files (a broker's raft.db and its
// write-ahead log) that is two commits in a row on the path of creating a topic. A
// crash between the two leaves either a term, on which the member waits to hear from
// the others, or an entry of term 1 with term 0 recorded, which raft handles as it
// would any older term: its next election starts term 1.
func (n *Node) bootstrapStores(c raft.Configuration) error {
	if !slices.ContainsFunc(c.Servers, func(s raft.Server) bool { return s.ID == raft.ServerID(n.cfg.ID) }) {
		return raft.ErrNotVoter // as raft's own bootstrap answers
	}
	term := make(chan error, 1)
	go func() { term <- n.stable.SetUint64(KeyCurrentTerm, 1) }()
	return errors.Join(n.logs.StoreLog(bootstrapEntry(c)), <-term)
}

func bootstrapEntry(c raft.Configuration) *raft.Log {
	return &raft.Log{Index: 1, Term: 1, Type: raft.LogConfiguration, Data: raft.EncodeConfiguration(c)}
}

// KeyCurrentTerm is raft's stable-store key for the current term.
var KeyCurrentTerm = []byte("CurrentTerm")

// FreshBootstrap returns the log entry that Open, told Config.Fresh with these Peers,
// writes as entry 1 along with the term 1 (KeyCurrentTerm), or nil when Open would not
// bootstrap at once (self not among peers, or listed at another address). A caller
// that writes both into empty stores together with records of its own, in the same
// commits, saves Open its own commits: Open then finds the state and starts on it as
// on a restart.
func FreshBootstrap(self Peer, peers []Peer) *raft.Log {
	boot, err := bootstrapAs("", self, bootstrapSet(peers, len(peers)))
	if boot == nil || err != nil {
		return nil
	}
	return bootstrapEntry(raftConfiguration(boot))
}

// heartbeatInMemory reports whether raft answers a heartbeat of term without writing
// its term first: raft's appendEntries persists the term when the term is new to it or
// when it is not a follower.
func (n *Node) heartbeatInMemory(term uint64) bool {
	r := n.Raft()
	return r != nil && r.State() == raft.Follower && term <= r.CurrentTerm()
}

// run starts raft on the node's stores: at Open, and again at a restart (restart.go).
func (n *Node) run() error {
	in := &instance{stopping: make(chan struct{}), ready: make(chan struct{})}
	defer close(in.ready)
	n.inst.Store(in)
	r, err := raft.NewRaft(n.raftConfig(), n.fsm.raftFSM(), guardedLogs{n.logs, n}, n.stable, n.snaps, raftTransport{n.trans, n.trans})
	if err != nil {
		return fmt.Errorf("election: start raft: %w", err)
	}
	in.raft = r
	n.raft.Store(r)
	// Leadership is followed in raft's own goroutine, through its state observations,
	// instead of by a goroutine per group reading LeaderCh: a broker with 6,000
	// replicas ran 6,000 of those, stacks that every garbage collection scans.
	r.RegisterObserver(raft.NewObserver(nil, false, func(o *raft.Observation) bool {
		if _, ok := o.Data.(raft.RaftState); ok {
			n.followState(in, o.Raft)
		}
		return false // nothing to send: the filter did the work
	}))
	n.followState(in, r) // a change before the observer was registered
	return nil
}

func raftConfiguration(peers []Peer) raft.Configuration {
	var c raft.Configuration
	for _, p := range peers {
		c.Servers = append(c.Servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(p.ID), Address: raft.ServerAddress(p.Addr)})
	}
	return c
}

// peersOf is the inverse of raftConfiguration (suffrage aside).
func peersOf(c raft.Configuration) []Peer {
	var out []Peer
	for _, s := range c.Servers {
		out = append(out, Peer{ID: string(s.ID), Addr: string(s.Address)})
	}
	return out
}

// Bootstrap makes this node bootstrap the group with peers, the explicit path for tools
// and tests. A node with Raft state refuses with ErrAlreadyBootstrapped and changes nothing.
func (n *Node) Bootstrap(peers []Peer) error {
	has, err := raft.HasExistingState(n.logs, n.stable, n.snaps)
	if err == nil && !has {
		err = n.Raft().BootstrapCluster(raftConfiguration(peers)).Error()
	}
	if has || errors.Is(err, raft.ErrCantBootstrap) {
		return fmt.Errorf("%w: group %q on %s", ErrAlreadyBootstrapped, n.cfg.Group, n.cfg.ID)
	}
	return err
}

// followState records whether r, in's raft, leads now, unless in is being replaced or
// the node is closing. It reads raft's state under mu rather than taking the
// observation's, so that of two racing calls the last records the latest state.
func (n *Node) followState(in *instance, r *raft.Raft) {
	n.mu.Lock()
	defer n.mu.Unlock()
	select {
	case <-in.stopping:
		return
	case <-n.done:
		return
	default:
	}
	n.setLeaderLocked(r.State() == raft.Leader)
}

// setLeader records and passes on whether this node leads, when that changed.
func (n *Node) setLeader(v bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.setLeaderLocked(v)
}

func (n *Node) setLeaderLocked(v bool) {
	if n.isLeader == v {
		return
	}
	countLeadership(v)
	n.isLeader = v
	for _, c := range n.subs {
		sendLatest(c, v)
	}
}

// sendLatest never blocks raft's notifier: a subscriber that falls behind loses its
// oldest signals, never the latest.
func sendLatest(c chan bool, v bool) {
	for {
		select {
		case c <- v:
			return
		default:
		}
		select {
		case <-c:
		default:
		}
	}
}

// LeaderChanges returns a new channel that first carries whether this node leads now and
// then every change (true = became leader). It is closed by Close.
func (n *Node) LeaderChanges() <-chan bool {
	c := make(chan bool, 8)
	n.mu.Lock()
	defer n.mu.Unlock()
	select {
	case <-n.done: // closed by Close under mu
		close(c)
		return c
	default:
	}
	c <- n.isLeader
	n.subs = append(n.subs, c)
	return c
}

// Raft exposes the underlying raft instance for stats and tools.
func (n *Node) Raft() *raft.Raft { return n.raft.Load() }

// IsLeader reports whether this node leads the group right now.
func (n *Node) IsLeader() bool { return n.Raft().State() == raft.Leader }

// Leader returns the current leader as this node knows it, or a zero Peer.
func (n *Node) Leader() Peer {
	addr, id := n.Raft().LeaderWithID()
	return Peer{ID: string(id), Addr: string(addr)}
}

// Campaign makes this follower stand for election now, as when a leader hands over its
// leadership (raft's TimeoutNow): without a pre-vote, and voters grant their vote even
// while they still know a leader. It is for a leader known to be gone (broker/nudge.go):
// a live one loses its leadership to it. Raft's rules still decide: the member wins only
// with the votes of a majority whose logs are no newer than its own. A leader, a
// candidate and a member without a vote are left alone (raft's TimeoutNow does not check
// the vote), and a member sitting out elections (recovering, halted) refuses.
func (n *Node) Campaign(ctx context.Context) error {
	r := n.Raft()
	if r.State() != raft.Follower {
		return nil
	}
	if n.canStand() != nil {
		return nil
	}
	return n.trans.TimeoutNowLocal(ctx, raft.RPCHeader{
		ProtocolVersion: raft.ProtocolVersionMax, ID: []byte(n.cfg.ID), Addr: []byte(n.trans.LocalAddr()),
	})
}

// errNotConfigured refuses TimeoutNow to a member that raft has not yet given a
// configuration naming it a voter.
var errNotConfigured = errors.New("election: this member has no configuration naming it a voter yet (it has not caught up with the leader)")

// canStand is the transport's gate on TimeoutNow (transport.GroupTransport.SetStandGate):
// a member stands only once its own raft names it a voter. A leader asked to hand over
// to a member it has just added sends TimeoutNow at once, before that member
// acknowledged anything (raft starts a new peer's next index past its own last entry,
// so its transfer finds nothing to catch up). The member, with an empty log, then
// stood in a term above the leader's and deposed it, and the group had no leader until
// a heartbeat timeout (9 s for partitions): decommissioning 1,200 replicas took twice
// as long. Refused, the transfer fails at once and is retried.
func (n *Node) canStand() error {
	r := n.Raft()
	if r == nil {
		return errNotConfigured
	}
	if !slices.ContainsFunc(r.GetConfiguration().Configuration().Servers, func(s raft.Server) bool {
		return s.ID == raft.ServerID(n.cfg.ID) && s.Suffrage == raft.Voter
	}) {
		return errNotConfigured
	}
	return nil
}

// ID returns this member's server ID.
func (n *Node) ID() string { return n.cfg.ID }

// Group returns the group name.
func (n *Node) Group() string { return n.cfg.Group }

// AppliedIndex is the index of the last log entry the FSM has applied (or restored).
func (n *Node) AppliedIndex() uint64 { return n.fsm.applied.Load() }

// WaitLeader blocks until the group has a leader this node knows of.
func (n *Node) WaitLeader(ctx context.Context) (Peer, error) {
	for {
		if p := n.Leader(); p.ID != "" {
			return p, nil
		}
		if err := n.pause(ctx, 20*time.Millisecond); err != nil {
			return Peer{}, n.noLeader(err)
		}
	}
}

// pause sleeps d unless ctx ends or the node closes first.
func (n *Node) pause(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-n.done:
		return ErrClosed
	}
}

func (n *Node) noLeader(err error) error {
	if errors.Is(err, ErrClosed) {
		return err
	}
	return fmt.Errorf("%w for group %q (no quorum?): %w", ErrNoLeader, n.cfg.Group, err)
}

// Members lists the group's configuration as this node knows it.
func (n *Node) Members(ctx context.Context) ([]Peer, error) {
	c, err := n.configuration(ctx)
	if err != nil {
		return nil, err
	}
	return peersOf(c), nil
}

// configuration waits for the latest configuration this node knows.
func (n *Node) configuration(ctx context.Context) (raft.Configuration, error) {
	f := n.Raft().GetConfiguration()
	if err := wait(ctx, f); err != nil {
		return raft.Configuration{}, err
	}
	return f.Configuration(), nil
}

// Close shuts raft down (without leaving the group), closes the stores the node opened
// and leaves the Mux. Other members see it as a stopped member.
func (n *Node) Close() error {
	n.closeOnce.Do(func() {
		n.mu.Lock()
		close(n.done)
		n.mu.Unlock()
		n.cancel()
		var errs []error
		n.runMu.Lock()
		if r := n.Raft(); r != nil {
			errs = append(errs, r.Shutdown().Error())
		}
		n.runMu.Unlock()
		n.bg.Wait()
		n.unregisterHandlers()
		errs = append(errs, n.trans.Close(), n.closer())
		n.mu.Lock()
		for _, c := range n.subs {
			close(c)
		}
		n.subs = nil
		n.mu.Unlock()
		n.closeErr = errors.Join(errs...)
	})
	return n.closeErr
}

// wait waits for a raft future, giving up when ctx ends (the future still completes
// inside raft; only the caller stops waiting).
func wait(ctx context.Context, f raft.Future) error {
	if ctx.Done() == nil {
		return f.Error()
	}
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// timeout turns ctx's deadline into the enqueue timeout raft's calls take (0 = none).
func timeout(ctx context.Context) time.Duration {
	if d, ok := ctx.Deadline(); ok {
		if t := time.Until(d); t > 0 {
			return t
		}
		return time.Millisecond
	}
	return 0
}
