package netns

import (
	"fmt"
	"net"

	"github.com/vishvananda/netlink"
)

// AddBridge creates a bridge and sets it up.
func (n *Namespace) AddBridge(name string) error {
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: name}}
	if err := n.nl.LinkAdd(br); err != nil {
		return fmt.Errorf("%s: add bridge %s: %w", n, name, err)
	}
	return n.Up(name)
}

// Veth creates a veth pair with one end, aName, in namespace a and the other,
// bName, in namespace b, and sets both up.
func Veth(a *Namespace, aName string, b *Namespace, bName string) error {
	veth := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: aName},
		PeerName:      bName,
		PeerNamespace: netlink.NsFd(b.Fd()),
	}
	if err := a.nl.LinkAdd(veth); err != nil {
		return fmt.Errorf("veth %s/%s - %s/%s: %w", a, aName, b, bName, err)
	}
	if err := a.Up(aName); err != nil {
		return err
	}
	return b.Up(bName)
}

// SetMaster enslaves a link to a bridge.
func (n *Namespace) SetMaster(link, bridge string) error {
	l, err := n.Link(link)
	if err != nil {
		return err
	}
	br, err := n.Link(bridge)
	if err != nil {
		return err
	}
	if err := n.nl.LinkSetMaster(l, br); err != nil {
		return fmt.Errorf("%s: attach %s to %s: %w", n, link, bridge, err)
	}
	return nil
}

// Link finds a link by name.
func (n *Namespace) Link(name string) (netlink.Link, error) {
	l, err := n.nl.LinkByName(name)
	if err != nil {
		return nil, fmt.Errorf("%s: link %s: %w", n, name, err)
	}
	return l, nil
}

// Links lists the names of the namespace's links.
func (n *Namespace) Links() ([]string, error) {
	ls, err := n.nl.LinkList()
	if err != nil {
		return nil, fmt.Errorf("%s: list links: %w", n, err)
	}
	names := make([]string, 0, len(ls))
	for _, l := range ls {
		names = append(names, l.Attrs().Name)
	}
	return names, nil
}

// Up sets a link up.
func (n *Namespace) Up(name string) error {
	l, err := n.Link(name)
	if err != nil {
		return err
	}
	if err := n.nl.LinkSetUp(l); err != nil {
		return fmt.Errorf("%s: set %s up: %w", n, name, err)
	}
	return nil
}

// AddAddress adds an address in CIDR form ("198.18.0.11/24") to a link.
func (n *Namespace) AddAddress(link, cidr string) error {
	l, err := n.Link(link)
	if err != nil {
		return err
	}
	addr, err := netlink.ParseAddr(cidr)
	if err != nil {
		return fmt.Errorf("%s: address %q: %w", n, cidr, err)
	}
	// IPv6 duplicate address detection would hold the address back for a
	// second or more; these are addresses the caller owns.
	addr.Flags |= nodad(addr.IP)
	if err := n.nl.AddrAdd(l, addr); err != nil {
		return fmt.Errorf("%s: add %s to %s: %w", n, cidr, link, err)
	}
	return nil
}

func nodad(ip net.IP) int {
	if ip.To4() == nil {
		return 0x02 // IFA_F_NODAD
	}
	return 0
}

// AddRoute adds a route to dst (CIDR, or "default") via gw.
func (n *Namespace) AddRoute(dst, gw string) error {
	gwIP := net.ParseIP(gw)
	if gwIP == nil {
		return fmt.Errorf("%s: route to %s: bad gateway %q", n, dst, gw)
	}
	route := &netlink.Route{Gw: gwIP}
	if dst != "default" {
		_, ipnet, err := net.ParseCIDR(dst)
		if err != nil {
			return fmt.Errorf("%s: route to %q: %w", n, dst, err)
		}
		route.Dst = ipnet
	} else if gwIP.To4() == nil {
		route.Family = netlink.FAMILY_V6
	}
	if err := n.nl.RouteAdd(route); err != nil {
		return fmt.Errorf("%s: route to %s via %s: %w", n, dst, gw, err)
	}
	return nil
}

// String names the namespace in errors.
func (n *Namespace) String() string {
	if n.Name == "" {
		return "host netns"
	}
	return "netns " + n.Name
}
