package electiontest

import (
	"slices"
	"time"

	"github.com/hashicorp/raft"

	"github.com/quorumq/quorumq/election/transport"
)

// link is one direction between two nodes, by index.
type link struct{ from, to int }

// Partition splits the network: two nodes still talk iff some group holds both, so
// Partition([]int{0, 1}, []int{2, 3, 4}) is a minority and a majority, and
// Partition([]int{0, 1, 2}, []int{2, 3, 4}) makes node 2 a bridge. A node in no
// group is isolated. It replaces every earlier fault.
func (c *Cluster) Partition(groups ...[]int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.links = map[link]transport.LinkFault{}
	for from := range c.Muxes {
		for to := range c.Muxes {
			connected := slices.ContainsFunc(groups, func(g []int) bool {
				return slices.Contains(g, from) && slices.Contains(g, to)
			})
			if from != to && !connected {
				c.links[link{from, to}] = transport.LinkFault{Drop: true}
			}
		}
	}
	c.applyFaults()
}

// Cut loses every frame node from sends to node to (one way: to's frames still
// reach from), on top of the faults already set.
func (c *Cluster) Cut(from, to int) { c.SetLink(from, to, transport.LinkFault{Drop: true}) }

// Delay makes the frames node from sends to node to arrive d later.
func (c *Cluster) Delay(from, to int, d time.Duration) {
	c.SetLink(from, to, transport.LinkFault{Delay: d})
}

// SetLink sets the fault of the direction from → to; a zero LinkFault heals it.
func (c *Cluster) SetLink(from, to int, f transport.LinkFault) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.links == nil {
		c.links = map[link]transport.LinkFault{}
	}
	if f == (transport.LinkFault{}) {
		delete(c.links, link{from, to})
	} else {
		c.links[link{from, to}] = f
	}
	c.applyFaults()
}

// Heal lifts every network fault.
func (c *Cluster) Heal() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.links = nil
	c.applyFaults()
}

// applyFaults hands each node's Mux its part of the link faults: the sender loses or
// delays its requests, the receiver the answers it reads (see transport.Faults).
// Called with c.mu held.
func (c *Cluster) applyFaults() {
	per := make([]transport.Faults, len(c.Muxes))
	add := func(t *map[raft.ServerAddress]transport.LinkFault, addr string, f transport.LinkFault) {
		if *t == nil {
			*t = map[raft.ServerAddress]transport.LinkFault{}
		}
		(*t)[raft.ServerAddress(addr)] = f
	}
	for l, f := range c.links {
		add(&per[l.from].Out, c.peers[l.to].Addr, f)
		add(&per[l.to].In, c.peers[l.from].Addr, f)
	}
	for i, m := range c.Muxes {
		m.SetFaults(per[i])
	}
}
