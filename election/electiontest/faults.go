package electiontest

import (
	"slices"
	"time"

	"github.com/quorumq/quorumq/internal/transport"
)

// Partition splits the network: two nodes still talk iff some group holds both, so
// Partition([]int{0, 1}, []int{2, 3, 4}) is a minority and a majority, and
// Partition([]int{0, 1, 2}, []int{2, 3, 4}) makes node 2 a bridge. A node in no
// group is isolated. It replaces every earlier fault.
func (c *Cluster) Partition(groups ...[]int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.links = map[transport.Link]transport.LinkFault{}
	for from := range c.Muxes {
		for to := range c.Muxes {
			connected := slices.ContainsFunc(groups, func(g []int) bool {
				return slices.Contains(g, from) && slices.Contains(g, to)
			})
			if from != to && !connected {
				c.links[transport.Link{From: from, To: to}] = transport.LinkFault{Drop: true}
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
		c.links = map[transport.Link]transport.LinkFault{}
	}
	if f == (transport.LinkFault{}) {
		delete(c.links, transport.Link{From: from, To: to})
	} else {
		c.links[transport.Link{From: from, To: to}] = f
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

// applyFaults hands each node's Mux its part of the link faults. Called with c.mu held.
func (c *Cluster) applyFaults() {
	addrs := make([]string, len(c.peers))
	for i, p := range c.peers {
		addrs[i] = p.Addr
	}
	for i, fs := range transport.FaultsOf(addrs, c.links) {
		c.Muxes[i].SetFaults(fs)
	}
}
