package nemesis

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/quorumq/quorumq/internal/transport"
)

// Fault kinds, as named by --faults.
const (
	KindPartition = "partition" // majority/minority, leader isolated, bridge, one-way
	KindKill      = "kill"      // SIGKILL, restarted after the hold
	KindPause     = "pause"     // SIGSTOP, SIGCONT after the hold
	KindDelay     = "delay"     // one process's links slowed, both ways
)

// Kinds are every fault kind; DefaultKinds the ones a run injects unless told otherwise.
var (
	Kinds        = []string{KindPartition, KindKill, KindPause, KindDelay}
	DefaultKinds = []string{KindPartition, KindKill, KindPause}
)

// Proc is one process a Nemesis can fault. Its link faults are written to FaultFile,
// which the process polls (transport.FaultFileEnv).
type Proc struct {
	Name      string
	Raft      string // its raft transport's address, as its peers dial it
	FaultFile string
	Pid       func() int
	Kill      func() // SIGKILL and wait
	Restart   func()
}

// Domain is a set of processes that form Raft groups among themselves (the
// managers, the brokers, the ATMs): partitions split a domain.
type Domain struct {
	Name  string
	Procs []*Proc
	// Leader names the process that leads (the domain's main group), "" if unknown.
	Leader func(ctx context.Context) string
}

// Nemesis injects one fault at a time into its domains, chosen by a seeded random
// generator, and heals it after a hold.
type Nemesis struct {
	rng     *rand.Rand
	kinds   []string
	domains []*Domain
	print   func(string)
	start   time.Time
	// Hold and Gap bound how long a fault lasts and how long the network stays
	// healthy between faults (uniform in [min, 2·min]); one fault in eight holds four
	// times longer, long enough for groups with slow timers (brokers' partitions) to
	// elect a new leader.
	Hold, Gap time.Duration

	active sync.Mutex // held while a fault is in place
	mu     sync.Mutex
	counts map[string]int
	log    []string
}

// New makes a Nemesis; print receives each fault and heal as it happens.
func New(seed uint64, kinds []string, domains []*Domain, print func(string)) *Nemesis {
	for _, d := range domains {
		for _, p := range d.Procs {
			writeFaults(p, transport.Faults{})
		}
	}
	return &Nemesis{
		rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), kinds: kinds, domains: domains,
		print: print, start: time.Now(), Hold: 600 * time.Millisecond, Gap: 300 * time.Millisecond,
		counts: map[string]int{},
	}
}

// Counts is how many faults of each kind were injected.
func (n *Nemesis) Counts() map[string]int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return maps.Clone(n.counts)
}

// Log is every fault as printed.
func (n *Nemesis) Log() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Clone(n.log)
}

// Quiet runs fn while no fault is in place (every process runs, every link is healed).
func (n *Nemesis) Quiet(fn func()) {
	n.active.Lock()
	defer n.active.Unlock()
	fn()
}

func (n *Nemesis) say(format string, args ...any) {
	line := fmt.Sprintf("nemesis: %7.1fs ", time.Since(n.start).Seconds()) + fmt.Sprintf(format, args...)
	n.mu.Lock()
	n.log = append(n.log, line)
	n.mu.Unlock()
	n.print(line)
}

// Run injects faults until ctx ends, then heals the last one.
func (n *Nemesis) Run(ctx context.Context) {
	var bag []string
	for ctx.Err() == nil {
		if len(bag) == 0 { // every kind once per round, in random order: the mix stays even
			bag = slices.Clone(n.kinds)
			n.rng.Shuffle(len(bag), func(i, j int) { bag[i], bag[j] = bag[j], bag[i] })
		}
		kind := bag[0]
		bag = bag[1:]
		d := n.domains[n.rng.IntN(len(n.domains))]
		n.active.Lock()
		heal := n.inject(ctx, kind, d)
		n.mu.Lock()
		n.counts[kind]++
		n.mu.Unlock()
		hold := n.between(n.Hold)
		if n.rng.IntN(8) == 0 {
			hold *= 4
		}
		sleep(ctx, hold)
		heal()
		n.active.Unlock()
		sleep(context.Background(), n.between(n.Gap)) // let the other side see the heal
	}
}

func (n *Nemesis) between(d time.Duration) time.Duration {
	return d + time.Duration(n.rng.Int64N(int64(d)+1))
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// target picks the leader half of the time (when one is known), else any process.
func (n *Nemesis) target(ctx context.Context, d *Domain) (int, string) {
	if n.rng.IntN(2) == 0 && d.Leader != nil {
		lctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		name := d.Leader(lctx)
		cancel()
		if i := slices.IndexFunc(d.Procs, func(p *Proc) bool { return p.Name == name }); i >= 0 {
			return i, "leader "
		}
	}
	return n.rng.IntN(len(d.Procs)), ""
}

// targets picks the processes a kill or a pause hits: one (see target), or one time
// in six a majority of the domain.
func (n *Nemesis) targets(ctx context.Context, d *Domain) ([]*Proc, string) {
	if n.rng.IntN(6) == 0 {
		idx := n.rng.Perm(len(d.Procs))[:len(d.Procs)/2+1]
		var ps []*Proc
		for _, i := range idx {
			ps = append(ps, d.Procs[i])
		}
		return ps, "majority "
	}
	i, role := n.target(ctx, d)
	return []*Proc{d.Procs[i]}, role
}

func procNames(ps []*Proc) string {
	names := make([]string, len(ps))
	for i, p := range ps {
		names[i] = p.Name
	}
	return strings.Join(names, ",")
}

// inject puts one fault of kind in place in d and returns what heals it.
func (n *Nemesis) inject(ctx context.Context, kind string, d *Domain) func() {
	switch kind {
	case KindKill:
		ps, role := n.targets(ctx, d)
		n.say("kill %s%s (SIGKILL)", role, procNames(ps))
		for _, p := range ps {
			p.Kill()
		}
		return func() {
			n.say("restart %s", procNames(ps))
			for _, p := range ps {
				p.Restart()
			}
		}
	case KindPause:
		ps, role := n.targets(ctx, d)
		pids := make([]int, len(ps))
		for i, p := range ps {
			pids[i] = p.Pid()
		}
		n.say("pause %s%s (SIGSTOP)", role, procNames(ps))
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGSTOP)
		}
		return func() {
			n.say("resume %s (SIGCONT)", procNames(ps))
			for _, pid := range pids {
				_ = syscall.Kill(pid, syscall.SIGCONT)
			}
		}
	case KindDelay:
		i, role := n.target(ctx, d)
		delay := time.Duration(20+n.rng.IntN(280)) * time.Millisecond
		slow := map[transport.Link]transport.LinkFault{}
		for j := range d.Procs {
			if j != i {
				slow[transport.Link{From: i, To: j}] = transport.LinkFault{Delay: delay}
				slow[transport.Link{From: j, To: i}] = transport.LinkFault{Delay: delay}
			}
		}
		n.say("delay %s%s's links by %v each way", role, d.Procs[i].Name, delay)
		applyFaults(d, slow)
		return func() {
			n.say("heal %s", d.Name)
			applyFaults(d, nil)
		}
	}
	links, desc := n.partition(ctx, d)
	n.say("partition %s: %s", d.Name, desc)
	applyLinks(d, links)
	return func() {
		n.say("heal %s", d.Name)
		applyLinks(d, nil)
	}
}

// partition picks one of the partition shapes for d and returns its cut links
// (from, to) and a description.
func (n *Nemesis) partition(ctx context.Context, d *Domain) ([][2]int, string) {
	all := make([]int, len(d.Procs))
	for i := range all {
		all[i] = i
	}
	n.rng.Shuffle(len(all), func(i, j int) { all[i], all[j] = all[j], all[i] })
	names := func(idx []int) string {
		var s []string
		for _, i := range idx {
			s = append(s, d.Procs[i].Name)
		}
		return strings.Join(s, ",")
	}
	switch n.rng.IntN(4) {
	case 0: // majority / minority
		k := len(all)/2 + 1
		maj, mnr := all[:k], all[k:]
		return split([][]int{maj, mnr}, len(all)), fmt.Sprintf("majority/minority %s | %s", names(maj), names(mnr))
	case 1: // the leader alone
		i, role := n.target(ctx, d)
		rest := slices.DeleteFunc(slices.Clone(all), func(j int) bool { return j == i })
		return split([][]int{{i}, rest}, len(all)), fmt.Sprintf("%sisolated %s | %s", role, d.Procs[i].Name, names(rest))
	case 2: // a bridge: the two sides only reach each other's through one process
		b, rest := all[0], all[1:]
		half := len(rest) / 2
		left, right := append([]int{b}, rest[:half]...), append([]int{b}, rest[half:]...)
		return split([][]int{left, right}, len(all)), fmt.Sprintf("bridge %s between %s | %s", d.Procs[b].Name, names(rest[:half]), names(rest[half:]))
	default: // one way: one process's frames to every other are lost, theirs still arrive
		i, role := n.target(ctx, d)
		var links [][2]int
		for _, j := range all {
			if j != i {
				links = append(links, [2]int{i, j})
			}
		}
		if n.rng.IntN(2) == 0 {
			for k := range links {
				links[k][0], links[k][1] = links[k][1], links[k][0]
			}
			return links, fmt.Sprintf("one-way: nothing reaches %s%s", role, d.Procs[i].Name)
		}
		return links, fmt.Sprintf("one-way: %s%s reaches nobody", role, d.Procs[i].Name)
	}
}

// split cuts both directions between every two processes that share no group.
func split(groups [][]int, n int) [][2]int {
	var links [][2]int
	for a := range n {
		for b := range n {
			if a != b && !slices.ContainsFunc(groups, func(g []int) bool { return slices.Contains(g, a) && slices.Contains(g, b) }) {
				links = append(links, [2]int{a, b})
			}
		}
	}
	return links
}

// applyLinks writes each process's fault file so that the links are cut; nil heals
// the domain.
func applyLinks(d *Domain, links [][2]int) {
	cut := map[transport.Link]transport.LinkFault{}
	for _, l := range links {
		cut[transport.Link{From: l[0], To: l[1]}] = transport.LinkFault{Drop: true}
	}
	applyFaults(d, cut)
}

// applyFaults writes each process's fault file for the given link faults.
func applyFaults(d *Domain, links map[transport.Link]transport.LinkFault) {
	addrs := make([]string, len(d.Procs))
	for i, p := range d.Procs {
		addrs[i] = p.Raft
	}
	for i, fs := range transport.FaultsOf(addrs, links) {
		writeFaults(d.Procs[i], fs)
	}
}

// writeFaults replaces p's fault file (in one rename, so the process never reads half
// of it). A failed write leaves that process's links as they were: said, so a run that
// meant to inject the fault is not read as one that survived it.
func writeFaults(p *Proc, fs transport.Faults) {
	if err := transport.WriteFaultFile(p.FaultFile, transport.FormatFaults(fs)); err != nil {
		slog.Error("nemesis: fault not injected", "process", p.Name, "error", err)
	}
}
