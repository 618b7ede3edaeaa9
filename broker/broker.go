// Package broker runs partition replicas: each partition of a topic is a Raft group
// (election.Node) over the brokers holding it, with the partition state machine of
// broker/partition and every partition's data in the broker's one bolt file
// (broker/internal/store). It serves the HTTP API in api.go for the managers and the SDK.
package broker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/hashicorp/raft"

	"github.com/quorumq/quorumq/broker/internal/store"
	"github.com/quorumq/quorumq/discovery"
	"github.com/quorumq/quorumq/election"
	"github.com/quorumq/quorumq/internal/secure"
	"github.com/quorumq/quorumq/internal/transport"
)

// Config configures a broker process.
type Config struct {
	ID       string
	DataDir  string
	RaftAddr string // host:port of the Raft listener every partition shares
	HTTPAddr string
	// Discovery, when set, registers the broker as quorumq-broker (with an HTTP health
	// check) and finds other brokers' HTTP addresses. Nil runs without discovery.
	Discovery       discovery.Backend
	MaxMessageBytes int // default 1 MiB
	// RaftMaxConns caps the Raft port's incoming connections (default
	// transport.DefaultMaxConns).
	RaftMaxConns int
	// HTTPReadTimeout bounds reading a request, header and body, and an idle
	// keep-alive connection, so slow clients cannot hold connections open
	// (default DefaultHTTPReadTimeout).
	HTTPReadTimeout time.Duration
	// Timing of every partition's Raft group; zero means PartitionTiming().
	Timing election.Timing
	// RetentionInterval is how often a partition's leader checks whether retention
	// deletes messages (default DefaultRetentionInterval).
	RetentionInterval time.Duration
	// ScrubRate is how many bytes per second the background verifier reads back (message
	// bodies and Raft log records at rest); 0 disables it.
	ScrubRate int
	Logger    *slog.Logger
	// Security is mutual TLS on the Raft port and the HTTP API, and the tokens the
	// HTTP API accepts from clients without a cluster certificate; nil runs insecure.
	Security *secure.Config
	// Out, when set, gets one line once the listeners are up ("broker b1 listening
	// http=... raft=..."), whatever the log level, for scripts and tests to wait on.
	Out io.Writer
}

// DefaultScrubRate is the default Config.ScrubRate: a full pass over 10 GB takes about
// 20 minutes, a small part of the disk's bandwidth.
const DefaultScrubRate = 8 << 20

// scrubPause is the rest between two passes of the scrubber.
const scrubPause = time.Minute

// DefaultMaxMessageBytes is the default limit on one message.
const DefaultMaxMessageBytes = 1 << 20

// MaxMessageLimit is the largest MaxMessageBytes: one message with its batch's
// framing fits in a Raft entry (maxEntryBytes).
const MaxMessageLimit = maxEntryBytes - 64<<10

// DefaultHTTPReadTimeout leaves a 64 MiB batch (the body limit) 30 s to
// arrive: about 2 MB/s.
const DefaultHTTPReadTimeout = 30 * time.Second

// Restarted replicas are opened openStage at a time, openPause apart, so that a broker
// holding a thousand partitions does not start a thousand election timers at once.
const (
	openStage = 50
	openPause = 100 * time.Millisecond
)

// coalesceDelay is how long a partition's heartbeat (or empty AppendEntries) may wait to
// share a write with other partitions' (transport.Config.CoalesceDelay, default 2 ms):
// a tenth of LeaderLeaseTimeout, at most maxCoalesce. Idle partitions cost CPU per
// heartbeat, and raft sends the next heartbeat only after the answer to the last, so the
// wait both batches syscalls and goroutine wake-ups and stretches raft's heartbeat
// interval (HeartbeatTimeout/10 to /5) by up to this much. Measured with 1,000 idle
// partitions on 3 brokers (HeartbeatTimeout and lease 1 s), per broker: 2 ms 20–25 % of
// a core, 20 ms 14–16 %, 100 ms 12–13 %, 200 ms 10–11 %. What waits is a leader's
// VerifyLeader (ReadBarrier, GET /size), never a produce: its AppendEntries is written
// at once and takes the waiting frames along. With heartbeats seconds apart there are
// few left to batch, so the wait is capped.
func coalesceDelay(t election.Timing) time.Duration {
	return min(t.LeaderLeaseTimeout/10, maxCoalesce)
}

const maxCoalesce = 100 * time.Millisecond

// Broker is one broker process.
type Broker struct {
	cfg  Config
	log  *slog.Logger
	db   *store.DB
	mux  *transport.Mux
	app  *fiber.App
	ln   net.Listener
	auth *secure.Auth

	mu       sync.RWMutex
	replicas map[string]*replica         // by group name
	opening  map[string]chan struct{}    // groups being opened, closed when done
	pending  int                         // replicas still to reopen after a restart
	faults   *faults                     // repair.go
	notes    atomic.Pointer[healthNotes] // healthz.go
	peerOnce sync.Once
	peerHTTP *http.Client // to other brokers' HTTP API (repair.go)
}

// New opens the broker's store and Raft listener and its HTTP listener.
func New(cfg Config) (*Broker, error) {
	if cfg.ID == "" || cfg.DataDir == "" || cfg.RaftAddr == "" || cfg.HTTPAddr == "" {
		return nil, errors.New("broker: Config needs ID, DataDir, RaftAddr and HTTPAddr")
	}
	if cfg.MaxMessageBytes <= 0 {
		cfg.MaxMessageBytes = DefaultMaxMessageBytes
	}
	if cfg.MaxMessageBytes > MaxMessageLimit {
		return nil, fmt.Errorf("broker: MaxMessageBytes %d is over %d: a message must fit in one Raft entry", cfg.MaxMessageBytes, MaxMessageLimit)
	}
	if cfg.HTTPReadTimeout <= 0 {
		cfg.HTTPReadTimeout = DefaultHTTPReadTimeout
	}
	if cfg.RetentionInterval <= 0 {
		cfg.RetentionInterval = DefaultRetentionInterval
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Timing == (election.Timing{}) {
		cfg.Timing = PartitionTiming()
	}
	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return nil, fmt.Errorf("broker: %w", err)
	}
	b := &Broker{cfg: cfg, log: cfg.Logger.With("broker", cfg.ID), replicas: map[string]*replica{}, opening: map[string]chan struct{}{},
		faults: newFaults()}
	var err error
	if b.db, err = store.Open(cfg.DataDir); err != nil {
		return nil, err
	}
	b.db.OnFault(b.faultFound)
	b.db.WAL().OnDamage(b.walDamage)
	tcfg := transport.Config{BindAddr: cfg.RaftAddr, Logger: b.log, CoalesceDelay: coalesceDelay(cfg.Timing), MaxConns: cfg.RaftMaxConns}
	tcfg.ServerTLS, tcfg.ClientTLS, tcfg.PeerID = cfg.Security.Raft()
	if b.mux, err = transport.New(tcfg); err != nil {
		b.db.Close()
		return nil, fmt.Errorf("broker: raft listener: %w", err)
	}
	if b.ln, err = net.Listen("tcp", cfg.HTTPAddr); err != nil {
		b.mux.Close()
		b.db.Close()
		return nil, fmt.Errorf("broker: http listener: %w", err)
	}
	b.ln = cfg.Security.ListenInternal(b.ln)
	b.auth = cfg.Security.Auth(true)
	b.mux.Handle(pingGroup, pingMethod, func(context.Context, []byte) ([]byte, error) { return nil, nil })
	b.app = b.newApp()
	return b, nil
}

// HTTPAddr is the address the HTTP API listens on.
func (b *Broker) HTTPAddr() string { return b.ln.Addr().String() }

// RaftAddr is the address of the shared Raft listener.
func (b *Broker) RaftAddr() string { return string(b.mux.Addr()) }

// Run runs a broker until ctx is done.
func Run(ctx context.Context, cfg Config) error {
	b, err := New(cfg)
	if err != nil {
		return err
	}
	return b.Run(ctx)
}

// Run serves the HTTP API, reopens the replicas recorded in the store (in stages) and
// registers with discovery; when ctx is done it deregisters and closes everything.
func (b *Broker) Run(ctx context.Context) error {
	defer b.Close()
	ctx, cancel := context.WithCancel(ctx) // stops the background work before Close
	defer cancel()
	serveErr := make(chan error, 1)
	go func() { serveErr <- b.app.Listener(b.ln) }()
	if b.cfg.Out != nil {
		fmt.Fprintf(b.cfg.Out, "broker %s listening http=%s raft=%s\n", b.cfg.ID, b.HTTPAddr(), b.RaftAddr())
	}

	descs, err := b.recorded()
	if err != nil {
		return err
	}
	go b.reopen(ctx, descs)
	go b.watchPeers(ctx)
	go b.noteHealth(ctx)
	go b.repairLoop(ctx)
	go b.retentionLoop(ctx)
	if b.cfg.ScrubRate > 0 {
		go b.db.Scrub(ctx, b.cfg.ScrubRate, scrubPause)
	}

	if d := b.cfg.Discovery; d != nil {
		if err := d.Register(ctx, b.registration()); err != nil {
			return fmt.Errorf("broker: register with discovery: %w", err)
		}
		defer func() {
			dctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			defer cancel()
			d.Deregister(dctx, discovery.ServiceBroker, b.cfg.ID)
		}()
	}
	select {
	case <-ctx.Done():
		return nil
	case err := <-serveErr:
		return fmt.Errorf("broker: http: %w", err)
	}
}

func (b *Broker) registration() discovery.Registration {
	return discovery.Registration{
		Instance: discovery.Instance{
			Service: discovery.ServiceBroker, ID: b.cfg.ID, Addr: b.HTTPAddr(),
			Meta: map[string]string{discovery.MetaRaftAddr: b.RaftAddr(), discovery.MetaHTTPAddr: b.HTTPAddr()},
		},
		HealthURL:     b.cfg.Security.Scheme() + "://" + b.HTTPAddr() + "/healthz",
		CheckInterval: time.Second,
		// A broker busy with a thousand partitions on a loaded machine may answer a poll
		// late now and then; the managers move every replica off a broker critical for
		// their grace period, so one slow answer must not make it critical. A dead
		// broker refuses connections at once: critical after checkFailures seconds.
		CheckTimeout:           checkTimeout,
		FailuresBeforeCritical: checkFailures,
		DeregisterAfter:        time.Minute,
	}
}

func (b *Broker) recorded() ([]replicaDesc, error) {
	recs, err := b.db.Replicas()
	if err != nil {
		return nil, err
	}
	descs := make([]replicaDesc, 0, len(recs))
	for group, v := range recs {
		var d replicaDesc
		if err := json.Unmarshal(v, &d); err != nil {
			return nil, fmt.Errorf("broker: replica record %s: %w", group, err)
		}
		descs = append(descs, d)
	}
	sort.Slice(descs, func(i, j int) bool {
		return groupName(descs[i].Topic, descs[i].Partition) < groupName(descs[j].Topic, descs[j].Partition)
	})
	b.mu.Lock()
	b.pending = len(descs)
	b.mu.Unlock()
	return descs, nil
}

// reopen restarts the recorded replicas in stages.
func (b *Broker) reopen(ctx context.Context, descs []replicaDesc) {
	start := time.Now()
	for i := 0; i < len(descs); i += openStage {
		var wg sync.WaitGroup
		for _, d := range descs[i:min(i+openStage, len(descs))] {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, _, err := b.ensureReplica(ctx, d); err != nil {
					b.log.Error("reopening replica", "topic", d.Topic, "partition", d.Partition, "error", err)
				}
				b.mu.Lock()
				b.pending--
				b.mu.Unlock()
			}()
		}
		wg.Wait()
		select {
		case <-ctx.Done():
			return
		case <-time.After(openPause):
		}
	}
	if len(descs) > 0 {
		b.log.Info("replicas reopened", "count", len(descs), "took", time.Since(start).Round(time.Millisecond))
	}
}

// ensureReplica opens the replica d describes unless it is open already.
func (b *Broker) ensureReplica(ctx context.Context, d replicaDesc) (r *replica, opened bool, err error) {
	group := groupName(d.Topic, d.Partition)
	for {
		b.mu.Lock()
		if r, ok := b.replicas[group]; ok {
			b.mu.Unlock()
			return r, false, nil
		}
		wait, busy := b.opening[group]
		if !busy {
			done := make(chan struct{})
			b.opening[group] = done
			b.mu.Unlock()
			defer func() {
				b.mu.Lock()
				delete(b.opening, group)
				b.mu.Unlock()
				close(done)
			}()
			break
		}
		b.mu.Unlock()
		select { // someone else is opening it: wait, then look again
		case <-wait:
		case <-ctx.Done():
			return nil, false, ctx.Err()
		}
	}
	// Recorded first: a crash during the open still reopens (and so finishes) it. A new
	// group's raft state goes in the same commits (store.DB.AddReplica).
	rec, _ := json.Marshal(d)
	var boot *raft.Log
	if d.New {
		boot = election.FreshBootstrap(election.Peer{ID: b.cfg.ID, Addr: string(b.mux.Addr())}, electionPeers(d.Peers))
	}
	if err := b.db.AddReplica(group, rec, boot); err != nil {
		return nil, false, err
	}
	if r, err = b.openReplica(ctx, d, nil); err != nil {
		return nil, false, err
	}
	b.mu.Lock()
	b.replicas[group] = r
	b.mu.Unlock()
	return r, true, nil
}

func (b *Broker) replica(topic string, part int) (*replica, bool) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	r, ok := b.replicas[groupName(topic, part)]
	return r, ok
}

// persist records a replica's current peers.
func (b *Broker) persist(r *replica) error {
	rec, _ := json.Marshal(r.desc())
	return b.db.SetReplica(r.group, rec)
}

// deleteReplica stops the replica and removes its data.
func (b *Broker) deleteReplica(r *replica) error {
	b.mu.Lock()
	delete(b.replicas, r.group)
	b.mu.Unlock()
	err := r.close()
	return errors.Join(err, b.db.DeleteGroup(r.group))
}

// Close stops every replica and closes the listeners and the store.
func (b *Broker) Close() error {
	sctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	errs := []error{b.app.ShutdownWithContext(sctx)}
	b.mu.Lock()
	rs := b.replicas
	b.replicas = map[string]*replica{}
	b.mu.Unlock()
	var wg sync.WaitGroup
	var emu sync.Mutex
	for _, r := range rs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := r.close()
			emu.Lock()
			errs = append(errs, err)
			emu.Unlock()
		}()
	}
	wg.Wait()
	errs = append(errs, b.mux.Close(), b.db.Close())
	return errors.Join(errs...)
}
