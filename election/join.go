package election

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/quorumq/quorumq/discovery"
)

// joinCallTimeout bounds one join request; a member without a leader holds it that long.
const joinCallTimeout = 3 * time.Second

// membership decides how a node without Raft state enters its group. It returns the
// configuration to bootstrap with, or nil once a running group has admitted this node
// (its leader then replicates the configuration here).
//
// Before bootstrapping, the node asks every candidate peer to admit it: a peer that is
// already running the group either admits it or, lacking a leader, makes it wait. Only
// when no peer runs the group do the members bootstrap, all with the same sorted set.
func (n *Node) membership(ctx context.Context) ([]Peer, error) {
	c := n.cfg
	self := Peer{ID: c.ID, Addr: string(c.Mux.Addr())}
	discover, expect, once := c.Discover, c.BootstrapExpect, false
	switch {
	case len(c.Peers) > 0:
		peers := slices.Clone(c.Peers)
		discover = func(context.Context) ([]Peer, error) { return peers, nil }
		expect, once = 0, true
		if slices.ContainsFunc(peers, func(p Peer) bool { return p.ID == self.ID }) {
			expect = len(peers)
		}
	case discover == nil:
		// Nothing to find: a group of one (development, single-node tools).
		return []Peer{self}, nil
	}
	for {
		peers, err := discover(ctx)
		if err != nil {
			n.log.Warn("discovering peers", "error", err)
		}
		joined, running := n.askToJoin(ctx, self, peers)
		if joined {
			n.log.Info("joined running group")
			return nil, nil
		}
		if !running && expect > 0 {
			if boot := bootstrapSet(peers, expect); slices.Contains(boot, self) {
				return boot, nil
			}
			if once {
				return nil, fmt.Errorf("election: group %q: Peers lists %s at another address than %s", c.Group, c.ID, self.Addr)
			}
		}
		if err := n.pause(ctx, 250*time.Millisecond); err != nil {
			return nil, fmt.Errorf("election: group %q: waiting for peers to bootstrap or join (expect %d, saw %d): %w",
				c.Group, expect, len(peers), err)
		}
	}
}

// bootstrapSet is the first expect peers by ID, or nil when fewer are known. Every member
// computes the same set from the same discovery answer.
func bootstrapSet(peers []Peer, expect int) []Peer {
	ps := slices.Clone(peers)
	slices.SortFunc(ps, func(a, b Peer) int { return strings.Compare(a.ID, b.ID) })
	ps = slices.CompactFunc(ps, func(a, b Peer) bool { return a.ID == b.ID })
	if len(ps) < expect {
		return nil
	}
	return ps[:expect]
}

// askToJoin sends a join request to every peer but self. joined: some member admitted
// this node. running: some peer runs the group but could not admit it now (no leader).
// Unreachable peers and peers still deciding count as neither.
func (n *Node) askToJoin(ctx context.Context, self Peer, peers []Peer) (joined, running bool) {
	req, _ := json.Marshal(self)
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, p := range peers {
		if p.ID == self.ID {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			cctx, cancel := context.WithTimeout(ctx, joinCallTimeout)
			defer cancel()
			resp, err := n.cfg.Mux.Call(cctx, raft.ServerAddress(p.Addr), n.cfg.Group, methodJoin, req)
			if err == nil {
				_, err = decodeReply(resp)
			}
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				joined = true
			case errors.Is(err, errPending), notDelivered(err):
			default:
				running = true
				n.log.Debug("peer runs the group but cannot admit us yet", "peer", p.ID, "error", err)
			}
		}()
	}
	wg.Wait()
	return joined, running
}

// DiscoverService lists the healthy instances of service as peers, with the raft address
// each one publishes in Meta["raft_addr"]; instances without one are skipped.
func DiscoverService(r discovery.Resolver, service string) func(ctx context.Context) ([]Peer, error) {
	return func(ctx context.Context) ([]Peer, error) {
		ins, err := r.Healthy(ctx, service)
		if err != nil {
			return nil, err
		}
		var out []Peer
		for _, in := range ins {
			if addr := in.Meta[discovery.MetaRaftAddr]; addr != "" {
				out = append(out, Peer{ID: in.ID, Addr: addr})
			}
		}
		return out, nil
	}
}
