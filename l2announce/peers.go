package l2announce

import (
	"net/netip"
	"slices"
)

// Peer is another agent's node: its name, its InternalIP addresses in the
// Node's order, and the UDP port its agent listens for heartbeats on.
type Peer struct {
	Name  string
	Addrs []netip.Addr
	Port  uint16
}

// PeerSet is the agents heartbeats go to and come from, as the Node
// objects list them. It is not changed once made.
type PeerSet struct {
	peers  []Peer
	byAddr map[netip.Addr]string
}

// NewPeerSet indexes peers by address. An address two nodes claim belongs
// to neither: a heartbeat from it cannot be told apart.
func NewPeerSet(peers []Peer) *PeerSet {
	s := &PeerSet{byAddr: map[netip.Addr]string{}}
	claimed := map[netip.Addr]int{}
	for _, p := range peers {
		p.Addrs = slices.Clone(p.Addrs)
		for i, a := range p.Addrs {
			p.Addrs[i] = a.Unmap()
		}
		s.peers = append(s.peers, p)
		own := map[netip.Addr]bool{}
		for _, a := range p.Addrs {
			if !own[a] {
				own[a] = true
				claimed[a]++
				s.byAddr[a] = p.Name
			}
		}
	}
	for a, n := range claimed {
		if n > 1 {
			delete(s.byAddr, a)
		}
	}
	return s
}

// Name is the node whose InternalIP addr is, or "" when it is no peer's.
func (s *PeerSet) Name(addr netip.Addr) string {
	if s == nil {
		return ""
	}
	return s.byAddr[addr.Unmap()]
}

// Peers lists the peers.
func (s *PeerSet) Peers() []Peer {
	if s == nil {
		return nil
	}
	return s.peers
}

// HeartbeatAddrs are where a node with these InternalIPs listens for
// heartbeats and sends them from: the first address of each family.
func HeartbeatAddrs(internal []netip.Addr) []netip.Addr {
	var out []netip.Addr
	var has4, has6 bool
	for _, a := range internal {
		a = a.Unmap()
		switch {
		case a.Is4() && !has4:
			has4 = true
			out = append(out, a)
		case a.Is6() && !has6:
			has6 = true
			out = append(out, a)
		}
	}
	return out
}
