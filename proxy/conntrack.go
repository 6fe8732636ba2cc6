package proxy

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// ConntrackCleaner forgets flows. UDP has no connection to close: without
// this, a client that keeps one source port (a DNS resolver) keeps sending
// to an endpoint that is gone, for as long as it keeps talking.
type ConntrackCleaner interface {
	// ForgetUDPTo deletes the conntrack entries of UDP flows that were
	// DNATed to addr.
	ForgetUDPTo(addr netip.Addr) (int, error)
	// ForgetUDPToService deletes the entries of UDP flows sent to a
	// Service address: those that began before the Service had endpoints
	// were never DNATed and, refreshed by every packet, never would be.
	ForgetUDPToService(addr netip.Addr) (int, error)
}

// KernelConntrack cleans the kernel's conntrack table through netlink, in
// the network namespace of the calling thread.
type KernelConntrack struct{}

// ForgetUDPTo implements ConntrackCleaner.
func (KernelConntrack) ForgetUDPTo(addr netip.Addr) (int, error) {
	return forgetUDP(netlink.ConntrackReplySrcIP, addr)
}

// ForgetUDPToService implements ConntrackCleaner.
func (KernelConntrack) ForgetUDPToService(addr netip.Addr) (int, error) {
	return forgetUDP(netlink.ConntrackOrigDstIP, addr)
}

func forgetUDP(match netlink.ConntrackFilterType, addr netip.Addr) (int, error) {
	f := &netlink.ConntrackFilter{}
	if err := f.AddProtocol(unix.IPPROTO_UDP); err != nil {
		return 0, err
	}
	if err := f.AddIP(match, net.IP(addr.AsSlice())); err != nil {
		return 0, err
	}
	family := netlink.InetFamily(unix.AF_INET)
	if addr.Is6() {
		family = netlink.InetFamily(unix.AF_INET6)
	}
	n, err := netlink.ConntrackDeleteFilters(netlink.ConntrackTable, family, f)
	if err != nil {
		return int(n), fmt.Errorf("delete UDP conntrack entries to %v: %w", addr, err)
	}
	return int(n), nil
}

// udpEndpoints lists every UDP endpoint address of the state.
func udpEndpoints(st State) map[netip.Addr]bool {
	out := map[netip.Addr]bool{}
	for _, sp := range st.Services {
		if sp.Key.Protocol != "udp" {
			continue
		}
		for _, e := range st.Endpoints[sp.Key] {
			out[e.Addr] = true
		}
	}
	return out
}

// udpServiceAddrs lists the Service addresses of UDP ports that have
// usable endpoints.
func udpServiceAddrs(st State) map[netip.Addr]bool {
	out := map[netip.Addr]bool{}
	for _, sp := range st.Services {
		if sp.Key.Protocol != "udp" || len(usable(st.Endpoints[sp.Key], false)) == 0 {
			continue
		}
		for _, a := range append(append(append([]netip.Addr{}, sp.ClusterIPs...), sp.ExternalIPs...), sp.LoadBalancerIPs...) {
			out[a] = true
		}
	}
	return out
}
