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

// udpAddrs are a UDP Service port's endpoint addresses, and the Service
// addresses it answers on when it has usable endpoints. Other protocols
// have none.
func udpAddrs(sp ServicePort, eps []Endpoint) (endpoints, service []netip.Addr) {
	if sp.Key.Protocol != "udp" {
		return nil, nil
	}
	for _, e := range eps {
		endpoints = append(endpoints, e.Addr)
	}
	if len(usable(eps, false)) > 0 {
		service = append(append(append(service, sp.ClusterIPs...), sp.ExternalIPs...), sp.LoadBalancerIPs...)
	}
	return endpoints, service
}

// countUDP moves the UDP counts by the ports that went (old) and came
// (next), and notes the endpoints no port has any more (their flows are
// to be forgotten) and the Service addresses that just got endpoints
// (flows sent before, never DNATed, are to be forgotten too).
func (s *Syncer) countUDP(old, next []*appliedPort) {
	if s.udp == nil {
		s.udp, s.udpSvc = map[netip.Addr]int{}, map[netip.Addr]int{}
	}
	dEP, dSvc := map[netip.Addr]int{}, map[netip.Addr]int{}
	for sign, ports := range map[int][]*appliedPort{-1: old, 1: next} {
		for _, a := range ports {
			if a == nil {
				continue
			}
			eps, svc := udpAddrs(a.sp, a.eps)
			for _, e := range eps {
				dEP[e] += sign
			}
			for _, v := range svc {
				dSvc[v] += sign
			}
		}
	}
	for a, d := range dEP {
		was := s.udp[a]
		if was > 0 && was+d <= 0 {
			s.udpGone = append(s.udpGone, a)
		}
		if was+d <= 0 {
			delete(s.udp, a)
		} else {
			s.udp[a] = was + d
		}
	}
	for a, d := range dSvc {
		was := s.udpSvc[a]
		if was <= 0 && was+d > 0 {
			s.udpNew = append(s.udpNew, a)
		}
		if was+d <= 0 {
			delete(s.udpSvc, a)
		} else {
			s.udpSvc[a] = was + d
		}
	}
}
