package podnet

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/berthnet/berth/internal/nftrules"
	"github.com/berthnet/berth/internal/sysctl"
)

// NFTable is the nftables table the pod network owns alone.
const NFTable = "berth-podnet"

// Applier puts a State into the kernel of the namespace it runs in. Every
// step is idempotent, so a periodic Apply also repairs drift: a deleted
// route, neighbour or FDB entry comes back; what no longer belongs goes.
type Applier struct {
	nft nftrules.Backend
	// masq is the masquerade table as last applied, nil when unknown
	// (at start and after a failed apply: the next one rebuilds it).
	masq *nftrules.Ruleset
}

// NewApplier opens an nftables netlink socket in the calling thread's
// network namespace and returns an Applier for that namespace.
func NewApplier() (*Applier, error) {
	nft, err := nftrules.NewNetlink(NFTable)
	if err != nil {
		return nil, fmt.Errorf("nftables: %w", err)
	}
	return &Applier{nft: nft}, nil
}

// Apply makes the kernel match st.
func (a *Applier) Apply(ctx context.Context, st State, up Uplink) error {
	if err := enableForwarding(); err != nil {
		return err
	}
	if err := applyBridge(st); err != nil {
		return fmt.Errorf("bridge %s: %w", Bridge, err)
	}
	if err := applyVXLAN(st, up); err != nil {
		return fmt.Errorf("vxlan %s: %w", VXLANDevice, err)
	}
	if err := applyRoutes(st); err != nil {
		return fmt.Errorf("routes: %w", err)
	}
	if err := a.applyMasquerade(ctx, st); err != nil {
		return fmt.Errorf("nftables %s: %w", NFTable, err)
	}
	return nil
}

func enableForwarding() error {
	if err := sysctl.Ensure("/proc/sys/net/ipv4/ip_forward", "1"); err != nil {
		return fmt.Errorf("enable IPv4 forwarding: %w", err)
	}
	// IPv6 may be off on the node; then there is nothing to forward.
	if err := sysctl.Ensure("/proc/sys/net/ipv6/conf/all/forwarding", "1"); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("enable IPv6 forwarding: %w", err)
	}
	return nil
}

func applyBridge(st State) error {
	l, err := netlink.LinkByName(Bridge)
	if err != nil {
		br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: Bridge, MTU: st.MTU}}
		if err := netlink.LinkAdd(br); err != nil {
			return err
		}
		if l, err = netlink.LinkByName(Bridge); err != nil {
			return err
		}
	}
	if l.Attrs().MTU != st.MTU {
		if err := netlink.LinkSetMTU(l, st.MTU); err != nil {
			return err
		}
	}
	if err := syncAddrs(l, st.BridgeAddrs); err != nil {
		return err
	}
	return netlink.LinkSetUp(l)
}

// syncAddrs gives the link exactly these global addresses.
func syncAddrs(l netlink.Link, want []netip.Prefix) error {
	have, err := netlink.AddrList(l, netlink.FAMILY_ALL)
	if err != nil {
		return err
	}
	keep := map[string]bool{}
	for _, p := range want {
		keep[p.String()] = true
		addr, err := netlink.ParseAddr(p.String())
		if err != nil {
			return err
		}
		if p.Addr().Is6() {
			addr.Flags |= unix.IFA_F_NODAD
		}
		if err := netlink.AddrReplace(l, addr); err != nil {
			return fmt.Errorf("address %v: %w", p, err)
		}
	}
	for _, h := range have {
		if h.IP.IsLinkLocalUnicast() || keep[h.IPNet.String()] {
			continue
		}
		if err := netlink.AddrDel(l, &h); err != nil {
			return err
		}
	}
	return nil
}

func applyVXLAN(st State, up Uplink) error {
	l, err := netlink.LinkByName(VXLANDevice)
	if st.VXLAN == nil {
		if err == nil {
			return netlink.LinkDel(l)
		}
		return nil
	}
	v := st.VXLAN
	upLink, uerr := netlink.LinkByName(up.Name)
	if uerr != nil {
		return fmt.Errorf("uplink %s: %w", up.Name, uerr)
	}
	if err == nil {
		cur, ok := l.(*netlink.Vxlan)
		if !ok || cur.VxlanId != VXLANID || !cur.SrcAddr.Equal(net.IP(v.Local.AsSlice())) || cur.Port != VXLANPort || cur.VtepDevIndex != upLink.Attrs().Index {
			if err := netlink.LinkDel(l); err != nil {
				return err
			}
			err = errors.New("recreate")
		}
	}
	if err != nil {
		dev := &netlink.Vxlan{
			LinkAttrs:    netlink.LinkAttrs{Name: VXLANDevice, MTU: st.MTU, HardwareAddr: v.MAC},
			VxlanId:      VXLANID,
			VtepDevIndex: upLink.Attrs().Index,
			SrcAddr:      net.IP(v.Local.AsSlice()),
			Port:         VXLANPort,
			Learning:     false,
		}
		if err := netlink.LinkAdd(dev); err != nil {
			return err
		}
		if l, err = netlink.LinkByName(VXLANDevice); err != nil {
			return err
		}
	}
	if l.Attrs().MTU != st.MTU {
		if err := netlink.LinkSetMTU(l, st.MTU); err != nil {
			return err
		}
	}
	if l.Attrs().HardwareAddr.String() != v.MAC.String() {
		if err := netlink.LinkSetHardwareAddr(l, v.MAC); err != nil {
			return err
		}
	}
	if err := syncAddrs(l, []netip.Prefix{v.Addr}); err != nil {
		return err
	}
	if err := netlink.LinkSetUp(l); err != nil {
		return err
	}
	idx := l.Attrs().Index
	wantNeigh := map[string]bool{}
	wantFDB := map[string]bool{}
	for _, p := range v.Peers {
		family := unix.AF_INET
		if p.Gateway.Is6() {
			family = unix.AF_INET6
		}
		neigh := &netlink.Neigh{LinkIndex: idx, Family: family, State: netlink.NUD_PERMANENT, Type: unix.RTN_UNICAST, IP: net.IP(p.Gateway.AsSlice()), HardwareAddr: p.MAC}
		if err := netlink.NeighSet(neigh); err != nil {
			return fmt.Errorf("neighbour %v for %s: %w", p.Gateway, p.Node, err)
		}
		fdb := &netlink.Neigh{LinkIndex: idx, Family: unix.AF_BRIDGE, State: netlink.NUD_PERMANENT, Flags: netlink.NTF_SELF, IP: net.IP(p.Remote.AsSlice()), HardwareAddr: p.MAC}
		if err := netlink.NeighSet(fdb); err != nil {
			return fmt.Errorf("fdb %v for %s: %w", p.MAC, p.Node, err)
		}
		wantNeigh[p.Gateway.String()] = true
		wantFDB[p.MAC.String()+"/"+p.Remote.String()] = true
	}
	for _, family := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		neighs, err := netlink.NeighList(idx, family)
		if err != nil {
			return err
		}
		for _, n := range neighs {
			if n.State&netlink.NUD_PERMANENT != 0 && !wantNeigh[n.IP.String()] {
				if err := netlink.NeighDel(&n); err != nil {
					return err
				}
			}
		}
	}
	fdbs, err := netlink.NeighList(idx, unix.AF_BRIDGE)
	if err != nil {
		return err
	}
	for _, n := range fdbs {
		if n.IP == nil || wantFDB[n.HardwareAddr.String()+"/"+n.IP.String()] {
			continue
		}
		if err := netlink.NeighDel(&n); err != nil {
			return err
		}
	}
	return nil
}

func applyRoutes(st State) error {
	want := map[string]bool{}
	for _, r := range st.Routes {
		dev, err := netlink.LinkByName(r.Device)
		if err != nil {
			return fmt.Errorf("route to %v: device %s: %w", r.Dst, r.Device, err)
		}
		_, dst, err := net.ParseCIDR(r.Dst.String())
		if err != nil {
			return err
		}
		route := &netlink.Route{LinkIndex: dev.Attrs().Index, Dst: dst, Gw: net.IP(r.Via.AsSlice()), Protocol: RouteProtocol}
		if r.OnLink {
			route.Flags = int(netlink.FLAG_ONLINK)
		}
		if err := netlink.RouteReplace(route); err != nil {
			// The kernel checks an onlink gateway against the routes in
			// place: this agent's own route to the same range over another
			// device (the mode before a switch: routed, then vxlan) makes it
			// refuse ("device mismatch", EINVAL). Without that route, it
			// takes the new one.
			if !r.OnLink || !errors.Is(err, unix.EINVAL) || removeOwnRoute(dst) != nil || netlink.RouteReplace(route) != nil {
				return fmt.Errorf("route to %v via %v (%s): %w", r.Dst, r.Via, r.Peer, err)
			}
		}
		want[r.Dst.String()] = true
	}
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		have, err := netlink.RouteListFiltered(fam, &netlink.Route{Protocol: RouteProtocol}, netlink.RT_FILTER_PROTOCOL)
		if err != nil {
			return err
		}
		for _, h := range have {
			if h.Dst != nil && want[h.Dst.String()] {
				continue
			}
			if err := netlink.RouteDel(&h); err != nil && !errors.Is(err, unix.ESRCH) {
				return fmt.Errorf("remove stale route %v: %w", h.Dst, err)
			}
		}
	}
	return nil
}

// removeOwnRoute removes this agent's routes (RouteProtocol) to dst.
func removeOwnRoute(dst *net.IPNet) error {
	fam := netlink.FAMILY_V4
	if dst.IP.To4() == nil {
		fam = netlink.FAMILY_V6
	}
	have, err := netlink.RouteListFiltered(fam, &netlink.Route{Dst: dst, Protocol: RouteProtocol}, netlink.RT_FILTER_DST|netlink.RT_FILTER_PROTOCOL)
	if err != nil {
		return err
	}
	for _, h := range have {
		if err := netlink.RouteDel(&h); err != nil && !errors.Is(err, unix.ESRCH) {
			return err
		}
	}
	return nil
}

// applyMasquerade sends what changed in the masquerade table, in one
// transaction: the whole table at start, after a failure, and when the
// table is gone (someone flushed the ruleset: the periodic apply repairs
// it, as it repairs routes).
func (a *Applier) applyMasquerade(ctx context.Context, st State) error {
	next := masquerade(st)
	if a.masq != nil {
		exists, err := a.nft.TableExists(ctx)
		if err != nil {
			return err
		}
		if !exists {
			a.masq = nil
		}
	}
	tx := nftrules.NewTx(NFTable)
	nftrules.Sync(tx, a.masq, next)
	if tx.Len() == 0 {
		return nil
	}
	if err := a.nft.Apply(ctx, tx); err != nil {
		a.masq = nil
		return err
	}
	a.masq = &next
	return nil
}

// masquerade is the table berth-podnet: pod traffic to anything outside
// the cluster's pod ranges leaves with the node's address; pod-to-pod
// traffic keeps the pod's own.
func masquerade(st State) nftrules.Ruleset {
	rs := nftrules.Empty()
	post := nftrules.BaseChain{Name: "postrouting", Type: "nat", Hook: "postrouting", Priority: "srcnat"}
	for _, fam := range []struct {
		name, typ, match string
		v4               bool
	}{{"v4", "ipv4_addr", "ip", true}, {"v6", "ipv6_addr", "ip6", false}} {
		pods, cluster := "pods-"+fam.name, "cluster-"+fam.name
		rs.Sets[pods] = nftrules.Set{Type: fam.typ, Interval: true, Elements: prefixes(filter(st.PodCIDRs, fam.v4))}
		rs.Sets[cluster] = nftrules.Set{Type: fam.typ, Interval: true, Elements: prefixes(filter(st.ClusterCIDRs, fam.v4))}
		post.Rules = append(post.Rules, fam.match+" saddr @"+pods+" "+fam.match+" daddr != @"+cluster+` masquerade comment "pod traffic leaving the cluster"`)
	}
	rs.Base = []nftrules.BaseChain{post}
	return rs
}

// prefixes writes ranges as set elements, sorted.
func prefixes(ps []netip.Prefix) []string {
	out := make([]string, 0, len(ps))
	for _, p := range ps {
		out = append(out, p.Masked().String())
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func filter(ps []netip.Prefix, v4 bool) []netip.Prefix {
	var out []netip.Prefix
	for _, p := range ps {
		if p.Addr().Is4() == v4 {
			out = append(out, p)
		}
	}
	return out
}

// FindUplink finds the interface that holds addr, with its subnet, MTU
// and every global address it has.
func FindUplink(addr netip.Addr) (Uplink, error) {
	links, err := netlink.LinkList()
	if err != nil {
		return Uplink{}, err
	}
	for _, l := range links {
		addrs, err := netlink.AddrList(l, netlink.FAMILY_ALL)
		if err != nil {
			continue
		}
		up := Uplink{Name: l.Attrs().Name, MTU: l.Attrs().MTU}
		for _, a := range addrs {
			ip, ok := netip.AddrFromSlice(a.IP)
			if !ok {
				continue
			}
			ones, _ := a.Mask.Size()
			p := netip.PrefixFrom(ip.Unmap(), ones)
			if p.Addr() == addr {
				up.Addr = p
			}
			if p.Addr().IsGlobalUnicast() {
				up.Prefixes = append(up.Prefixes, p)
			}
		}
		if up.Addr.IsValid() {
			return up, nil
		}
	}
	return Uplink{}, fmt.Errorf("no interface holds the node's address %v", addr)
}
