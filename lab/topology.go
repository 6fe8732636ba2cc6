package lab

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"time"

	"github.com/vishvananda/netlink"

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
// Nodes and the LAN client route everything via the router; the external
// client reaches the LAN only through the router. Nothing routes to the
// host's own uplinks.

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
	routes, err := host.Netlink().RouteList(nil, netlink.FAMILY_V4)
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
		if netip.PrefixFrom(dst.Unmap(), ones).Overlaps(c.LAN) {
			return fmt.Errorf("lab LAN %v overlaps host route %v; choose another with --lan", c.LAN, r.Dst)
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

	// attach makes a namespace a host on the LAN with one address and a
	// default route via the router.
	attach := func(ns *netns.Namespace, port string, addr netip.Addr, gw bool) error {
		if err := netns.Veth(lanNS, port, ns, "eth0"); err != nil {
			return err
		}
		if err := lanNS.SetMaster(port, lanBridge); err != nil {
			return err
		}
		if err := ns.AddAddress("eth0", prefixed(addr, c.LAN)); err != nil {
			return err
		}
		if gw {
			return ns.AddRoute("default", c.RouterLAN().String())
		}
		return nil
	}

	router, err := create(c.RouterNamespace())
	if err != nil {
		return err
	}
	if err := attach(router, "router", c.RouterLAN(), false); err != nil {
		return err
	}
	if err := router.Sysctl("net/ipv4/ip_forward", "1"); err != nil {
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
	if err := attach(client, "client", c.ClientLAN(), true); err != nil {
		return err
	}

	for i := 1; i <= c.Nodes; i++ {
		node, err := create(c.NodeNamespace(i))
		if err != nil {
			return err
		}
		if err := attach(node, c.NodeName(i), c.NodeAddr(i), true); err != nil {
			return err
		}
		if err := node.Sysctl("net/ipv4/ip_forward", "1"); err != nil {
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
	return host.AddAddress(c.HostLink(), prefixed(c.HostLAN(), c.LAN))
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
