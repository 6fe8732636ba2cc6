package bgp

import (
	"context"
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/vishvananda/netlink"
)

// podRoutes lists the kernel's routes of RouteProtocol of a family as
// "prefix via gateway", sorted.
func podRoutes(t *testing.T, family int) []string {
	t.Helper()
	rs, err := netlink.RouteListFiltered(family, &netlink.Route{Protocol: RouteProtocol}, netlink.RT_FILTER_PROTOCOL)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, r := range rs {
		if r.Dst != nil {
			out = append(out, fmt.Sprintf("%s via %s", r.Dst, r.Gw))
		}
	}
	sort.Strings(out)
	return out
}

// ownerAddr adds to the test namespace's end of pn's link an address of
// a subnet of its own (10.211.<n>.1/24, or fd00:211:<n>::1/64 on an IPv6
// link), so that a route via another address of that subnet (the owner
// node's, across the router's LAN) can be installed; it returns that
// other address.
func ownerAddr(t *testing.T, pn *peerNet, n byte) netip.Addr {
	t.Helper()
	family, cidr, owner := netlink.FAMILY_V4, fmt.Sprintf("10.211.%d.1/24", n), netip.AddrFrom4([4]byte{10, 211, n, 2})
	if pn.local.Is6() {
		family, cidr = netlink.FAMILY_V6, fmt.Sprintf("fd00:211:%x::1/64", n)
		owner = netip.MustParseAddr(fmt.Sprintf("fd00:211:%x::2", n))
	}
	as, err := netlink.AddrList(nil, family)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range as {
		if ip, ok := netip.AddrFromSlice(a.IP); !ok || ip.Unmap() != pn.local {
			continue
		}
		l, err := netlink.LinkByIndex(a.LinkIndex)
		if err != nil {
			t.Fatal(err)
		}
		extra, err := netlink.ParseAddr(cidr)
		if err != nil {
			t.Fatal(err)
		}
		extra.Flags |= 0x02 // IFA_F_NODAD: the test owns the address
		if err := netlink.AddrAdd(l, extra); err != nil {
			t.Fatal(err)
		}
		return owner
	}
	t.Fatalf("no link holds %s", pn.local)
	return netip.Addr{}
}

// refusedView writes a session's refusals as "prefix via next hop:
// reason".
func refusedView(st PeerState) []string {
	var out []string
	for _, r := range st.Refused {
		out = append(out, fmt.Sprintf("%s via %s: %s", r.Prefix, r.NextHop, r.Reason))
	}
	return out
}

// Pod network mode bgp (issue 23 item 2), IPv4 and IPv6: node2's pod
// range comes to node1 through a router (gobgpd "relay", next hop
// node2's address) and is hijacked by another peer (gobgpd "hijacker":
// the same range with itself as next hop and a shorter AS path, and a
// more specific route inside it). The node keeps routing the range to
// node2, installs nothing of the hijacker's, and says what it refuses
// and why, in the session's state and the metric; when the relay
// withdraws, the range is not routed at all rather than to the hijacker.
func TestImportRefusesPodRangeHijack(t *testing.T) {
	for _, c := range []struct {
		name                string
		v6                  bool
		family              int
		afi                 string
		node1, node2, inner string
	}{
		{"IPv4", false, netlink.FAMILY_V4, "ipv4", "10.244.1.0/24", "10.244.2.0/24", "10.244.2.0/25"},
		{"IPv6", true, netlink.FAMILY_V6, "ipv6", "fd00:10:244:1::/64", "fd00:10:244:2::/64", "fd00:10:244:2::/80"},
	} {
		t.Run(c.name, func(t *testing.T) {
			relay := startGoBGPdOn(t, newPeerNetOf(t, 202, "bgpg", c.v6), 64500, 64512)
			hijacker := startGoBGPdOn(t, newPeerNetOf(t, 202, "bgpg", c.v6), 64501, 64512)
			testHijack(t, relay, hijacker, c.family, c.afi, netip.MustParsePrefix(c.node1), netip.MustParsePrefix(c.node2), netip.MustParsePrefix(c.inner))
		})
	}
}

func testHijack(t *testing.T, relay, hijacker *gobgpd, family int, afi string, node1Range, node2Range, inner netip.Prefix) {
	node2 := ownerAddr(t, relay.peerNet, byte(peerSeq.Load()))
	s, ctx := runSpeaker(t)
	routes := &Routes{Resync: time.Second}
	s.LearnInto(routes)
	rctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- routes.Run(rctx) }()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("routes: %v", err)
		}
	})
	ranges := []PodRange{
		{Prefix: node1Range, Node: "node1", Addrs: []netip.Addr{relay.local}},
		{Prefix: node2Range, Node: "node2", Addrs: []netip.Addr{node2}},
	}
	routes.Allow(ranges[1:])
	peers := []*Peer{
		{Name: "hijacker", Address: hijacker.remote, Port: 179, PeerASN: 64501, LocalASN: 64512, HoldTime: ptr(9 * time.Second), AllowOwnAS: true},
		{Name: "relay", Address: relay.remote, Port: 179, PeerASN: 64500, LocalASN: 64512, HoldTime: ptr(9 * time.Second), AllowOwnAS: true},
	}
	plan := Plan{Peers: peers, Exports: map[string][]Export{}, PodRanges: ranges}
	if relay.local.Is4() {
		plan.NextHop4 = relay.local
	} else {
		plan.NextHop6 = relay.local
	}
	if err := s.Apply(ctx, plan); err != nil {
		t.Fatal(err)
	}
	established(t, ctx, s, "relay")
	established(t, ctx, s, "hijacker")

	// The relay passes node2's route on: AS path 64500 64999.
	if _, err := relay.gobgp("global", "rib", "add", "-a", afi, node2Range.String(), "nexthop", node2.String(), "aspath", "64999"); err != nil {
		t.Fatal(err)
	}
	want := []string{fmt.Sprintf("%s via %s", node2Range, node2)}
	waitFor(t, 20*time.Second, "node2's range routed to node2", func() error {
		if got := podRoutes(t, family); strings.Join(got, ",") != strings.Join(want, ",") {
			return fmt.Errorf("kernel routes %q, want %q", got, want)
		}
		return nil
	})

	// The hijack: AS path 64501 alone, shorter, and a longer prefix
	// inside.
	for _, pf := range []netip.Prefix{node2Range, inner} {
		if _, err := hijacker.gobgp("global", "rib", "add", "-a", afi, pf.String(), "nexthop", hijacker.remote.String()); err != nil {
			t.Fatal(err)
		}
	}
	wantRefused := []string{
		fmt.Sprintf("%s via %s: NextHopNotOwner", node2Range, hijacker.remote),
		fmt.Sprintf("%s via %s: InsidePodRange", inner, hijacker.remote),
	}
	waitFor(t, 20*time.Second, "the hijacker's routes refused", func() error {
		st, err := stateOf(ctx, s, "hijacker")
		if err != nil {
			return err
		}
		got, kernel := refusedView(st), podRoutes(t, family)
		if strings.Join(got, ",") != strings.Join(wantRefused, ",") || st.Accepted != 0 || strings.Join(kernel, ",") != strings.Join(want, ",") {
			return fmt.Errorf("refused %q and %d accepted, want %q and 0; kernel routes %q, want %q", got, st.Accepted, wantRefused, kernel, want)
		}
		return nil
	})
	// Still, once the hijacker's routes were judged.
	if got := podRoutes(t, family); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("kernel routes after the hijack %q, want %q", got, want)
	}
	if st, err := stateOf(ctx, s, "relay"); err != nil || len(st.Refused) != 0 || st.Accepted != 1 {
		t.Errorf("the relay's session %+v (%v): want 1 accepted, none refused", st, err)
	}
	metrics := `
# HELP berth_agent_bgp_prefixes_refused Prefixes the peer sends that the node refuses (pod network mode bgp), by reason: NextHopNotOwner (a node's pod range whose next hop is not that node), InsidePodRange.
# TYPE berth_agent_bgp_prefixes_refused gauge
berth_agent_bgp_prefixes_refused{peer="hijacker",reason="InsidePodRange"} 1
berth_agent_bgp_prefixes_refused{peer="hijacker",reason="NextHopNotOwner"} 1
berth_agent_bgp_prefixes_refused{peer="relay",reason="InsidePodRange"} 0
berth_agent_bgp_prefixes_refused{peer="relay",reason="NextHopNotOwner"} 0
`
	if err := testutil.CollectAndCompare(s.Collector(), strings.NewReader(metrics), "berth_agent_bgp_prefixes_refused"); err != nil {
		t.Error(err)
	}

	// The relay withdraws: nothing routes node2's range, the hijacker's
	// path is not taken in its place.
	if _, err := relay.gobgp("global", "rib", "del", "-a", afi, node2Range.String()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "node2's range unrouted", func() error {
		if got := podRoutes(t, family); len(got) != 0 {
			return fmt.Errorf("kernel routes %q, want none", got)
		}
		return nil
	})
	if st, err := stateOf(ctx, s, "hijacker"); err != nil || strings.Join(refusedView(st), ",") != strings.Join(wantRefused, ",") {
		t.Errorf("the hijacker's session once the relay withdrew: %+v (%v), want refused %q", st, err, wantRefused)
	}
}

// classify restates the import policy for status: hand-written cases of
// each outcome, IPv4 and IPv6.
func TestClassify(t *testing.T) {
	ranges := newRangeIndex(normalRanges([]PodRange{
		{Prefix: netip.MustParsePrefix("10.244.2.0/24"), Node: "node2", Addrs: []netip.Addr{netip.MustParseAddr("192.0.2.12"), netip.MustParseAddr("2001:db8::12")}},
		{Prefix: netip.MustParsePrefix("fd00:10:244:2::/64"), Node: "node2", Addrs: []netip.Addr{netip.MustParseAddr("192.0.2.12"), netip.MustParseAddr("2001:db8::12")}},
		{Prefix: netip.MustParsePrefix("10.244.3.0/24"), Node: "node3"},
		{Prefix: netip.MustParsePrefix("10.245.0.0/26"), Node: "node4", Addrs: []netip.Addr{netip.MustParseAddr("192.0.2.14")}},
	}))
	for _, c := range []struct {
		prefix, nextHop string
		want            string // "" accepted; else "reason owner range"
	}{
		{"10.244.2.0/24", "192.0.2.12", ""},
		{"10.244.2.0/24", "192.0.2.99", "NextHopNotOwner node2 10.244.2.0/24"},
		{"10.244.2.128/25", "192.0.2.12", "InsidePodRange node2 10.244.2.0/24"},
		{"10.244.2.7/32", "192.0.2.99", "InsidePodRange node2 10.244.2.0/24"},
		{"10.244.0.0/16", "192.0.2.99", ""}, // wider: not inside a range
		{"198.51.100.0/24", "192.0.2.99", ""},
		{"10.244.3.0/24", "192.0.2.13", "NextHopNotOwner node3 10.244.3.0/24"}, // node3 has no address
		{"10.245.0.0/26", "192.0.2.14", ""},                                    // ranges of two lengths
		{"10.245.0.32/27", "192.0.2.14", "InsidePodRange node4 10.245.0.0/26"},
		{"10.245.0.64/27", "192.0.2.14", ""}, // beside it
		{"10.245.0.0/24", "192.0.2.14", ""},  // wider
		{"fd00:10:244:2::/64", "2001:db8::12", ""},
		{"fd00:10:244:2::/64", "192.0.2.12", "NextHopNotOwner node2 fd00:10:244:2::/64"}, // an IPv4 next hop is not its IPv6 owner
		{"fd00:10:244:2::/64", "2001:db8::99", "NextHopNotOwner node2 fd00:10:244:2::/64"},
		{"fd00:10:244:2:1::/80", "2001:db8::12", "InsidePodRange node2 fd00:10:244:2::/64"},
	} {
		r, refused := classify(ranges, netip.MustParsePrefix(c.prefix), netip.MustParseAddr(c.nextHop))
		got := ""
		if refused {
			got = fmt.Sprintf("%s %s %s", r.Reason, r.Owner, r.Range)
		}
		if got != c.want {
			t.Errorf("%s via %s: got %q, want %q", c.prefix, c.nextHop, got, c.want)
		}
	}
}
