// Package podnet is the node side of Berth's pod network, run by
// berth-agent: the pod bridge, routes to every other node's pods (directly
// or over VXLAN), and masquerading of pod traffic that leaves the cluster.
// Desired computes what the node should have, as plain data; Apply puts it
// in the kernel.
package podnet

import (
	"fmt"
	"hash/fnv"
	"net"
	"net/netip"
	"sort"
)

// Mode is how traffic reaches other nodes' pods.
type Mode string

// The pod network modes.
const (
	// Routed: a route per peer node via its InternalIP (needs one L2 segment).
	Routed Mode = "routed"
	// VXLAN: every peer through the berth.vxlan overlay.
	VXLAN Mode = "vxlan"
	// Auto: routed to peers on the uplink's subnet, VXLAN to the rest.
	Auto Mode = "auto"
	// BGP: each node advertises its pod ranges to its BGP peers and
	// learns the others' from them (the BGP speaker installs those
	// routes; the pod network installs none to peers).
	BGP Mode = "bgp"
)

// ParseMode checks a mode name.
func ParseMode(s string) (Mode, error) {
	switch m := Mode(s); m {
	case Routed, VXLAN, Auto, BGP:
		return m, nil
	}
	return "", fmt.Errorf("pod network mode %q: use routed, vxlan, auto or bgp", s)
}

// Names of what the agent owns in the kernel.
const (
	Bridge      = "berth0"
	VXLANDevice = "berth.vxlan"
	VXLANID     = 1
	VXLANPort   = 8472
	// RouteProtocol marks Berth's routes so that stale ones can be found
	// and removed without touching anybody else's.
	RouteProtocol = 98
	// VXLANOverhead is what VXLAN over IPv4 adds to each packet (outer
	// Ethernet, IPv4, UDP and VXLAN headers); VXLANOverhead6 over IPv6.
	VXLANOverhead  = 50
	VXLANOverhead6 = 70
)

// Node is what the agent knows about one node.
type Node struct {
	Name string
	// InternalIP is the address other nodes reach this one on: its IPv4
	// InternalIP when it has one.
	InternalIP netip.Addr
	// InternalIP6 is a dual-stack node's IPv6 InternalIP (InternalIP is
	// then the IPv4 one): its IPv6 pod range is routed via it.
	InternalIP6 netip.Addr
	PodCIDRs    []netip.Prefix
}

// Uplink is this node's interface toward the other nodes.
type Uplink struct {
	Name   string
	Addr   netip.Prefix // the InternalIP with the subnet's length
	MTU    int
	Family int
	// Prefixes are every global address of the link with its subnet's
	// length, of both families.
	Prefixes []netip.Prefix
}

// onLink reports whether addr is on one of the uplink's subnets.
func (u Uplink) onLink(addr netip.Addr) bool {
	for _, p := range u.Prefixes {
		if p.Contains(addr) {
			return true
		}
	}
	return u.Addr.Contains(addr)
}

// State is everything the node should have for the pod network.
type State struct {
	// BridgeAddrs are the gateway addresses on berth0, one per pod range.
	BridgeAddrs []netip.Prefix
	MTU         int
	Routes      []Route
	// VXLAN is set when any peer is reached over the overlay.
	VXLAN *VXLANState
	// PodCIDRs are this node's pod ranges (masqueraded when leaving).
	PodCIDRs []netip.Prefix
	// ClusterCIDRs are every pod range of the cluster: traffic to them is
	// never masqueraded.
	ClusterCIDRs []netip.Prefix
}

// Route is one route to a peer's pod range.
type Route struct {
	Dst    netip.Prefix
	Via    netip.Addr
	Device string // the uplink or berth.vxlan
	OnLink bool
	Peer   string
}

// VXLANState is the overlay device and its per-peer entries.
type VXLANState struct {
	Local netip.Addr
	MAC   net.HardwareAddr
	// Addr is this node's address on the overlay: the network address of
	// its first pod range, as /32 (Flannel's convention).
	Addr  netip.Prefix
	Peers []VXLANPeer
}

// VXLANPeer is one remote VTEP.
type VXLANPeer struct {
	Node    string
	Remote  netip.Addr       // the peer's InternalIP
	MAC     net.HardwareAddr // the peer's VTEP MAC
	Gateway netip.Addr       // the peer's overlay address
}

// VTEPMAC derives a node's VXLAN MAC from its InternalIP, so every agent
// knows every peer's without publishing it: locally administered, unicast.
// An IPv4 address is taken whole; an IPv6 one, which does not fit, as 40
// bits of its FNV-1a hash under another first byte (its last 32 bits alone
// would be the same for ::11 in two subnets).
func VTEPMAC(ip netip.Addr) net.HardwareAddr {
	b := ip.As16()
	if ip.Is4() || ip.Is4In6() {
		return net.HardwareAddr{0x0e, 0xbe, b[12], b[13], b[14], b[15]}
	}
	h := fnv.New64a()
	h.Write(b[:])
	sum := h.Sum(nil)
	return net.HardwareAddr{0x0a, sum[0], sum[1], sum[2], sum[3], sum[4]}
}

// Desired computes the node's pod network from its own Node, the others,
// the mode and its uplink. mtu, when not 0, overrides the derived MTU.
func Desired(self Node, peers []Node, mode Mode, up Uplink, mtu int) (State, error) {
	if len(self.PodCIDRs) == 0 {
		return State{}, fmt.Errorf("node %s has no podCIDR yet (is kube-controller-manager running with --allocate-node-cidrs?)", self.Name)
	}
	st := State{PodCIDRs: sortedPrefixes(self.PodCIDRs)}
	for _, p := range st.PodCIDRs {
		st.BridgeAddrs = append(st.BridgeAddrs, netip.PrefixFrom(p.Masked().Addr().Next(), p.Bits()))
	}
	st.MTU = up.MTU
	if mode != Routed && mode != BGP {
		st.MTU = up.MTU - VXLANOverhead
		if up.Addr.Addr().Is6() {
			// The overlay's underlay is the node's InternalIP's family.
			st.MTU = up.MTU - VXLANOverhead6
		}
	}
	if mtu != 0 {
		if err := checkMTU(mtu, st.MTU, mode, up, st.PodCIDRs); err != nil {
			return State{}, err
		}
		st.MTU = mtu
	}
	cluster := append([]netip.Prefix(nil), self.PodCIDRs...)
	sorted := append([]Node(nil), peers...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Name < sorted[j].Name })
	for _, p := range sorted {
		if p.Name == self.Name || len(p.PodCIDRs) == 0 || !p.InternalIP.IsValid() {
			continue
		}
		cluster = append(cluster, p.PodCIDRs...)
		if mode == BGP {
			continue // the BGP speaker routes to the peers' pods
		}
		direct := mode == Routed || (mode == Auto && up.Addr.Contains(p.InternalIP))
		for _, c := range sortedPrefixes(p.PodCIDRs) {
			switch {
			case c.Addr().Is4() == p.InternalIP.Is4() && direct:
				st.Routes = append(st.Routes, Route{Dst: c, Via: p.InternalIP, Device: up.Name, Peer: p.Name})
				continue
			case c.Addr().Is4() != p.InternalIP.Is4() && mode != VXLAN && c.Addr().Is6() && p.InternalIP6.IsValid() && up.onLink(p.InternalIP6):
				// A dual-stack peer's IPv6 range goes directly via its
				// IPv6 InternalIP when that is on the uplink's subnet.
				st.Routes = append(st.Routes, Route{Dst: c, Via: p.InternalIP6, Device: up.Name, Peer: p.Name})
				continue
			case mode == Routed:
				// Routed mode has no overlay, and a route via an address
				// off the link would fail the whole apply: no route.
				continue
			}
			// Over the overlay, whatever the range's family: the VXLAN
			// device is a link like any other, and IPv6 pods ride over an
			// IPv4 underlay (or the other way round) unchanged.
			if st.VXLAN == nil {
				st.VXLAN = &VXLANState{Local: up.Addr.Addr(), MAC: VTEPMAC(up.Addr.Addr()), Addr: netip.PrefixFrom(st.PodCIDRs[0].Masked().Addr(), st.PodCIDRs[0].Addr().BitLen())}
			}
			gw := c.Masked().Addr()
			st.VXLAN.Peers = append(st.VXLAN.Peers, VXLANPeer{Node: p.Name, Remote: p.InternalIP, MAC: VTEPMAC(p.InternalIP), Gateway: gw})
			st.Routes = append(st.Routes, Route{Dst: c, Via: gw, Device: VXLANDevice, OnLink: true, Peer: p.Name})
		}
	}
	st.ClusterCIDRs = sortedPrefixes(cluster)
	return st, nil
}

func sortedPrefixes(ps []netip.Prefix) []netip.Prefix {
	out := append([]netip.Prefix(nil), ps...)
	sort.Slice(out, func(i, j int) bool {
		if out[i].Addr().Is4() != out[j].Addr().Is4() {
			return out[i].Addr().Is4()
		}
		return out[i].Addr().Less(out[j].Addr())
	})
	return out
}
