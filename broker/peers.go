package broker

import (
	"fmt"
	"net"
	"net/http"
	"strconv"

	"github.com/quorumq/quorumq/broker/brokerapi"
)

// checkPeers refuses a member list a Raft group cannot run on: a peer without
// an id, an address that is not host:port (`not-an-addr` started a group
// that logged dial errors forever), or two peers with one id or one address.
func checkPeers(peers []brokerapi.Peer) error {
	if len(peers) == 0 {
		return failf(http.StatusBadRequest, "peers are required (every broker holding the partition, with raft_addr)")
	}
	ids := make(map[string]bool, len(peers))
	addrs := make(map[string]bool, len(peers))
	for i, p := range peers {
		if err := checkPeer(p); err != nil {
			return failf(http.StatusBadRequest, "peer %d: %v", i, err)
		}
		if ids[p.ID] || addrs[p.RaftAddr] {
			return failf(http.StatusBadRequest, "peer %d (%s at %s): id or raft_addr given twice", i, p.ID, p.RaftAddr)
		}
		ids[p.ID], addrs[p.RaftAddr] = true, true
	}
	return nil
}

func checkPeer(p brokerapi.Peer) error {
	if p.ID == "" {
		return fmt.Errorf("id is required")
	}
	if err := checkHostPort(p.RaftAddr); err != nil {
		return fmt.Errorf("raft_addr: %w", err)
	}
	if p.HTTPAddr != "" {
		if err := checkHostPort(p.HTTPAddr); err != nil {
			return fmt.Errorf("http_addr: %w", err)
		}
	}
	return nil
}

func checkHostPort(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q is not host:port", addr)
	}
	if n, err := strconv.ParseUint(port, 10, 16); host == "" || err != nil || n == 0 {
		return fmt.Errorf("%q is not host:port with a host and a port from 1 to 65535", addr)
	}
	return nil
}
