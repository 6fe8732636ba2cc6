package bgp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/osrg/gobgp/v4/pkg/apiutil"
	"github.com/osrg/gobgp/v4/pkg/packet/bgp"
	"github.com/vishvananda/netlink"
)

// RouteProtocol marks the kernel routes the Routes installer owns (the
// pod network's own routes use 98).
const RouteProtocol = 99

// Routes puts the routes the speaker learns from its peers into the
// kernel, for the pod network in mode bgp: a route is installed only when
// its prefix is another node's pod range and its next hop that node's
// address (Allow; the speaker's import policy refuses the others before
// they can be best), and removed when the peer withdraws it. What it installed is
// compared with the kernel every Resync, so a route deleted by hand comes
// back.
type Routes struct {
	Resync time.Duration

	mu      sync.Mutex
	allowed map[netip.Prefix][]netip.Addr
	learned map[netip.Prefix]netip.Addr
	wake    chan struct{}
	once    sync.Once
}

func (r *Routes) init() {
	r.once.Do(func() {
		r.learned = map[netip.Prefix]netip.Addr{}
		r.wake = make(chan struct{}, 1)
	})
}

func (r *Routes) poke() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// Allow sets the routes that may be installed: the other nodes' pod
// ranges, each via its node's addresses.
func (r *Routes) Allow(ranges []PodRange) {
	r.init()
	m := make(map[netip.Prefix][]netip.Addr, len(ranges))
	for _, p := range ranges {
		m[p.Prefix.Masked()] = append(m[p.Prefix.Masked()], p.Addrs...)
	}
	r.mu.Lock()
	r.allowed = m
	r.mu.Unlock()
	r.poke()
}

// onBestPath takes the server's best-path events.
func (r *Routes) onBestPath(paths []*apiutil.Path, _ time.Time) {
	r.init()
	r.mu.Lock()
	for _, p := range paths {
		nlri, ok := p.Nlri.(*bgp.IPAddrPrefix)
		if !ok || !p.PeerAddress.IsValid() {
			continue // not unicast, or our own
		}
		pf := nlri.Prefix.Masked()
		if p.Withdrawal {
			delete(r.learned, pf)
			continue
		}
		if nh := nextHop(p.Attrs); nh.IsValid() {
			r.learned[pf] = nh
		}
	}
	r.mu.Unlock()
	r.poke()
}

func nextHop(attrs []bgp.PathAttributeInterface) netip.Addr {
	for _, a := range attrs {
		switch a := a.(type) {
		case *bgp.PathAttributeNextHop:
			return a.Value
		case *bgp.PathAttributeMpReachNLRI:
			return a.Nexthop
		}
	}
	return netip.Addr{}
}

// Run keeps the kernel in step until ctx ends, then removes its routes.
func (r *Routes) Run(ctx context.Context) error {
	r.init()
	every := r.Resync
	if every <= 0 {
		every = 5 * time.Second
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		if err := r.sync(false); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return r.sync(true)
		case <-r.wake:
		case <-t.C:
		}
	}
}

// sync makes the kernel's routes of RouteProtocol the learned, allowed
// ones (none when clear).
func (r *Routes) sync(clear bool) error {
	want := map[netip.Prefix]netip.Addr{}
	r.mu.Lock()
	if !clear {
		for pf, nh := range r.learned {
			if slices.Contains(r.allowed[pf], nh) {
				want[pf] = nh
			}
		}
	}
	r.mu.Unlock()
	var errs []error
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		have, err := netlink.RouteListFiltered(fam, &netlink.Route{Protocol: RouteProtocol}, netlink.RT_FILTER_PROTOCOL)
		if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
			return fmt.Errorf("list routes: %w", err)
		}
		for _, h := range have {
			if h.Dst == nil {
				continue
			}
			dst, _ := netip.AddrFromSlice(h.Dst.IP)
			ones, _ := h.Dst.Mask.Size()
			pf := netip.PrefixFrom(dst.Unmap(), ones)
			gw, _ := netip.AddrFromSlice(h.Gw)
			if nh, ok := want[pf]; ok && nh == gw.Unmap() {
				delete(want, pf) // in place already
				continue
			}
			if err := netlink.RouteDel(&h); err != nil {
				errs = append(errs, fmt.Errorf("delete route %s: %w", pf, err))
			}
		}
	}
	for pf, nh := range want {
		route := &netlink.Route{Dst: &net.IPNet{IP: pf.Addr().AsSlice(), Mask: net.CIDRMask(pf.Bits(), pf.Addr().BitLen())},
			Gw: nh.AsSlice(), Protocol: RouteProtocol}
		if err := netlink.RouteReplace(route); err != nil {
			errs = append(errs, fmt.Errorf("route %s via %s: %w", pf, nh, err))
		}
	}
	return errors.Join(errs...)
}
