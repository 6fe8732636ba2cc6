package lab

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/berthnet/berth/lab/netns"
)

// The lab's network:
//
//	<lab>-external 203.0.113.2 ── eth1 <lab>-router eth0 198.18.0.1 ──┐
//	                                                                   │ br0 in <lab>-lan
//	<lab>-node1..N 198.18.0.11.. ──────────────────────────────────────┤
//	<lab>-client 198.18.0.253 ─────────────────────────────────────────┤
//	host (<lab>-host) 198.18.0.254: kube-apiserver ─────────────────────┘
//
// Every host on the LAN also has an IPv6 address in LAN6 (fdbe:c612::1,
// ::11.., ::253, ::254); the upstream link is IPv4 only. Nodes and the LAN
// client route everything via the router; the external client reaches the
// LAN only through the router. Nothing routes to the host's own uplinks.

const lanBridge = "br0"

func prefixed(a netip.Addr, p netip.Prefix) string {
	return a.String() + "/" + strconv.Itoa(p.Bits())
}

// checkHostFree refuses a LAN that the host already routes, so the lab never
// shadows a real network or another lab.
func (c Config) checkHostFree(host *netns.Namespace) error {
	if _, err := host.Netlink().LinkByName(c.HostLink()); err == nil {
		return fmt.Errorf("link %s already exists on the host: a lab named %q is up or was not torn down; run `berthctl lab down --name %s`", c.HostLink(), c.Name, c.Name)
	}
	routes, err := host.Netlink().RouteList(nil, netlink.FAMILY_ALL)
	if err != nil {
		return fmt.Errorf("list host routes: %w", err)
	}
	for _, r := range routes {
		if r.Dst == nil {
			continue // the default route does not claim the LAN
		}
		dst, ok := netip.AddrFromSlice(r.Dst.IP)
		if !ok {
			continue
		}
		ones, _ := r.Dst.Mask.Size()
		if ones == 0 {
			continue
		}
		p := netip.PrefixFrom(dst.Unmap(), ones)
		if p.Overlaps(c.LAN) {
			return fmt.Errorf("lab LAN %v overlaps host route %v; choose another with --lan", c.LAN, r.Dst)
		}
		if p.Overlaps(c.LAN6) {
			return fmt.Errorf("lab LAN %v overlaps host route %v; choose another with --lan6", c.LAN6, r.Dst)
		}
	}
	return nil
}

// buildTopology creates every namespace and link of the lab.
func (c Config) buildTopology() (err error) {
	host, err := netns.Host()
	if err != nil {
		return err
	}
	defer host.Close()
	if err := c.checkHostFree(host); err != nil {
		return err
	}

	var opened []*netns.Namespace
	defer func() {
		for _, ns := range opened {
			ns.Close()
		}
	}()
	create := func(name string) (*netns.Namespace, error) {
		ns, err := netns.Create(name)
		if err == nil {
			opened = append(opened, ns)
		}
		return ns, err
	}
	lanNS, err := create(c.LANNamespace())
	if err != nil {
		return err
	}
	if err := lanNS.AddBridge(lanBridge); err != nil {
		return err
	}

	// attach makes a namespace a host on the LAN with an address of each
	// family (without duplicate address detection: the lab owns them) and
	// default routes via the router.
	attach := func(ns *netns.Namespace, port string, addr, addr6 netip.Addr, gw bool) error {
		if err := netns.Veth(lanNS, port, ns, "eth0"); err != nil {
			return err
		}
		if err := lanNS.SetMaster(port, lanBridge); err != nil {
			return err
		}
		if err := ns.AddAddress("eth0", prefixed(addr, c.LAN)); err != nil {
			return err
		}
		if err := ns.AddAddress("eth0", prefixed(addr6, c.LAN6)); err != nil {
			return err
		}
		if gw {
			if err := ns.AddRoute("default", c.RouterLAN().String()); err != nil {
				return err
			}
			return ns.AddRoute("default", c.RouterLAN6().String())
		}
		return nil
	}

	router, err := create(c.RouterNamespace())
	if err != nil {
		return err
	}
	if err := attach(router, "router", c.RouterLAN(), c.RouterLAN6(), false); err != nil {
		return err
	}
	if err := router.Sysctl("net/ipv4/ip_forward", "1"); err != nil {
		return err
	}
	if err := router.Sysctl("net/ipv6/conf/all/forwarding", "1"); err != nil {
		return err
	}

	external, err := create(c.ExternalNamespace())
	if err != nil {
		return err
	}
	if err := netns.Veth(router, "eth1", external, "eth0"); err != nil {
		return err
	}
	if err := router.AddAddress("eth1", prefixed(c.RouterUpstream(), c.Upstream)); err != nil {
		return err
	}
	if err := external.AddAddress("eth0", prefixed(c.ExternalAddr(), c.Upstream)); err != nil {
		return err
	}
	if err := external.AddRoute("default", c.RouterUpstream().String()); err != nil {
		return err
	}

	client, err := create(c.ClientNamespace())
	if err != nil {
		return err
	}
	if err := attach(client, "client", c.ClientLAN(), c.ClientLAN6(), true); err != nil {
		return err
	}

	lanHosts := []*netns.Namespace{router, client}
	for i := 1; i <= c.Nodes; i++ {
		node, err := create(c.NodeNamespace(i))
		if err != nil {
			return err
		}
		lanHosts = append(lanHosts, node)
		if err := attach(node, c.NodeName(i), c.NodeAddr(i), c.NodeAddr6(i), true); err != nil {
			return err
		}
		if err := node.Sysctl("net/ipv4/ip_forward", "1"); err != nil {
			return err
		}
		if err := node.Sysctl("net/ipv6/conf/all/forwarding", "1"); err != nil {
			return err
		}
		// The kernel flushes static IPv6 addresses when a link goes down;
		// a node's network manager puts them back. The lab has none, so
		// the node keeps them, and its InternalIP (where berth-agent
		// listens for heartbeats) survives the layer-2 link-down scenario.
		if err := node.Sysctl("net/ipv6/conf/all/keep_addr_on_down", "1"); err != nil {
			return err
		}
	}

	// The host's leg on the LAN: only the LAN prefix is routed through it.
	if err := netns.Veth(lanNS, "host", host, c.HostLink()); err != nil {
		return err
	}
	if err := lanNS.SetMaster("host", lanBridge); err != nil {
		return err
	}
	if err := host.AddAddress(c.HostLink(), prefixed(c.HostLAN(), c.LAN)); err != nil {
		return err
	}
	if err := host.AddAddress(c.HostLink(), prefixed(c.HostLAN6(), c.LAN6)); err != nil {
		return fmt.Errorf("%w (is IPv6 disabled on this machine? the lab is dual-stack)", err)
	}
	// The link-local addresses the kernel gave each LAN interface still go
	// through duplicate address detection; NDP (the router's, the layer-2
	// announcer's) sends from them, so wait until they are usable.
	return waitLinkLocal(lanHosts, "eth0", 10*time.Second)
}

// waitLinkLocal waits until link in every namespace has a link-local
// address that passed duplicate address detection.
func waitLinkLocal(nss []*netns.Namespace, link string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for _, ns := range nss {
		for {
			state, err := linkLocalState(ns, link)
			if err != nil {
				return err
			}
			if state == "" {
				break
			}
			if state == "dadfailed" {
				return fmt.Errorf("%s: the link-local address of %s failed duplicate address detection", ns, link)
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("%s: %s has no usable link-local address after %s (%s)", ns, link, timeout, state)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return nil
}

// linkLocalState is "" when link has a usable link-local address, else
// "tentative", "dadfailed" or "none".
func linkLocalState(ns *netns.Namespace, link string) (string, error) {
	l, err := ns.Link(link)
	if err != nil {
		return "", err
	}
	addrs, err := ns.Netlink().AddrList(l, netlink.FAMILY_V6)
	if err != nil {
		return "", fmt.Errorf("%s: addresses of %s: %w", ns, link, err)
	}
	state := "none"
	for _, a := range addrs {
		if !a.IP.IsLinkLocalUnicast() {
			continue
		}
		switch {
		case a.Flags&unix.IFA_F_DADFAILED != 0:
			state = "dadfailed"
		case a.Flags&unix.IFA_F_TENTATIVE != 0:
			if state != "dadfailed" {
				state = "tentative"
			}
		default:
			return "", nil
		}
	}
	return state, nil
}

// removeTopology deletes every namespace with the lab's prefix (and so every
// process and link in them) and the host's leg, and waits until the kernel has
// let go of that link.
func (c Config) removeTopology() ([]string, error) {
	names, err := netns.List(c.Prefix())
	if err != nil {
		return nil, err
	}
	var errs []error
	var removed []string
	for _, name := range names {
		if err := netns.Remove(name); err != nil {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, "netns "+name)
	}
	host, err := netns.Host()
	if err != nil {
		return removed, errors.Join(append(errs, err)...)
	}
	defer host.Close()
	if l, err := host.Netlink().LinkByName(c.HostLink()); err == nil {
		if err := host.Netlink().LinkDel(l); err != nil {
			errs = append(errs, fmt.Errorf("delete link %s: %w", c.HostLink(), err))
		} else {
			removed = append(removed, "link "+c.HostLink())
		}
	}
	// Namespaces are dismantled asynchronously; wait for the veth to go.
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := host.Netlink().LinkByName(c.HostLink()); err != nil {
			break
		}
		if time.Now().After(deadline) {
			errs = append(errs, fmt.Errorf("link %s is still on the host", c.HostLink()))
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	return removed, errors.Join(errs...)
}
