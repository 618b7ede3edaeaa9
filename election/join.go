package election

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
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
// Members of a Fresh group skip the asking.
func (n *Node) membership(ctx context.Context) ([]Peer, error) {
	c := n.cfg
	self := Peer{ID: c.ID, Addr: string(c.Mux.Addr())}
	discover, expect := c.Discover, c.BootstrapExpect
	switch {
	case len(c.Peers) > 0:
		peers := slices.Clone(c.Peers)
		discover = func(context.Context) ([]Peer, error) { return peers, nil }
		expect = 0
		if slices.ContainsFunc(peers, func(p Peer) bool { return p.ID == self.ID }) {
			expect = len(peers)
			if c.Fresh {
				if boot, err := bootstrapAs(c.Group, self, bootstrapSet(peers, expect)); boot != nil || err != nil {
					return boot, err
				}
			}
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
		a := n.askToJoin(ctx, self, peers)
		if a.joined {
			// Bootstrapping with the peer's own initial configuration writes the very
			// entry the leader would send, and lets this node campaign right away.
			if a.boot != nil {
				n.log.Info("bootstrapping with a running member's initial configuration", "members", a.boot)
			} else {
				n.log.Info("admitted to running group")
			}
			return a.boot, nil
		}
		if !a.running && expect > 0 {
			if boot, err := bootstrapAs(c.Group, self, bootstrapSet(peers, expect)); boot != nil || err != nil {
				return boot, err
			}
		}
		if err := n.pause(ctx, 250*time.Millisecond); err != nil {
			return nil, fmt.Errorf("election: group %q: waiting for peers to bootstrap or join (expect %d, saw %d): %w",
				c.Group, expect, len(peers), err)
		}
	}
}

// bootstrapAs returns boot if self is among its members (nil if not), or an error if
// boot lists self's ID at another address.
func bootstrapAs(group string, self Peer, boot []Peer) ([]Peer, error) {
	i := slices.IndexFunc(boot, func(p Peer) bool { return p.ID == self.ID })
	switch {
	case i < 0:
		return nil, nil
	case boot[i] != self:
		return nil, fmt.Errorf("election: group %q: peers list %s at %s but its Mux is at %s", group, self.ID, boot[i].Addr, self.Addr)
	}
	return boot, nil
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

// joinAnswer is one peer's reply to a join request.
type joinAnswer struct {
	joined  bool
	running bool   // the peer runs the group but could not admit us now (no leader)
	boot    []Peer // set when we are in the peer's unchanged bootstrap configuration
}

// askToJoin sends a join request to every peer but self and returns at the first
// admission. Unreachable peers and peers still deciding count as neither joined nor
// running.
func (n *Node) askToJoin(ctx context.Context, self Peer, peers []Peer) joinAnswer {
	req, _ := json.Marshal(self)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	answers := make(chan joinAnswer, len(peers))
	asked := 0
	for _, p := range peers {
		if p.ID == self.ID {
			continue
		}
		asked++
		go func() {
			cctx, cancel := context.WithTimeout(ctx, joinCallTimeout)
			defer cancel()
			resp, err := n.cfg.Mux.Call(cctx, raft.ServerAddress(p.Addr), n.cfg.Group, methodJoin, req)
			if err == nil {
				resp, err = decodeReply(resp)
			}
			var a joinAnswer
			switch {
			case err == nil:
				a.joined = true
				if len(resp) > 0 && json.Unmarshal(resp, &a.boot) != nil {
					a.boot = nil
				}
			case errors.Is(err, errPending), notDelivered(err):
			default:
				a.running = true
				n.log.Debug("peer runs the group but cannot admit us yet", "peer", p.ID, "error", err)
			}
			answers <- a
		}()
	}
	var sum joinAnswer
	for range asked {
		a := <-answers
		if a.joined {
			return a
		}
		sum.running = sum.running || a.running
	}
	return sum
}

// announceAddress runs when a member restarts on its state: if its Mux now listens at
// another address than its configuration records (a new container IP), the others still
// dial the old one, so it asks them to admit it again, which makes the leader record the
// new address.
func (n *Node) announceAddress() {
	self := Peer{ID: n.cfg.ID, Addr: string(n.cfg.Mux.Addr())}
	for {
		var others []Peer
		moved := false
		for _, s := range n.Raft().GetConfiguration().Configuration().Servers {
			if string(s.ID) == self.ID {
				moved = string(s.Address) != self.Addr
			} else {
				others = append(others, Peer{ID: string(s.ID), Addr: string(s.Address)})
			}
		}
		if !moved {
			return
		}
		if a := n.askToJoin(n.ctx, self, others); a.joined {
			n.log.Info("announced new raft address", "addr", self.Addr)
			return
		}
		if n.pause(n.ctx, time.Second) != nil {
			return
		}
	}
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
