package podnet

import (
	"fmt"
	"net"
	"net/netip"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }
func addr(s string) netip.Addr  { return netip.MustParseAddr(s) }

func TestDesiredModes(t *testing.T) {
	self := Node{Name: "a", InternalIP: addr("192.0.2.11"), PodCIDRs: []netip.Prefix{pfx("10.244.0.0/24")}}
	near := Node{Name: "b", InternalIP: addr("192.0.2.12"), PodCIDRs: []netip.Prefix{pfx("10.244.1.0/24")}}
	far := Node{Name: "c", InternalIP: addr("198.51.100.7"), PodCIDRs: []netip.Prefix{pfx("10.244.2.0/24")}}
	none := Node{Name: "d", InternalIP: addr("192.0.2.14")} // no podCIDR yet
	up := Uplink{Name: "eth0", Addr: pfx("192.0.2.11/24"), MTU: 1500}

	st, err := Desired(self, []Node{far, near, none, self}, Auto, up, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Routes) != 2 || st.Routes[0].Device != "eth0" || st.Routes[0].Via != near.InternalIP || st.Routes[1].Device != VXLANDevice || st.Routes[1].Via != addr("10.244.2.0") || !st.Routes[1].OnLink {
		t.Fatalf("auto routes %+v: want b direct, c over VXLAN", st.Routes)
	}
	if st.VXLAN == nil || len(st.VXLAN.Peers) != 1 || st.VXLAN.Peers[0].Remote != far.InternalIP || st.VXLAN.Addr != pfx("10.244.0.0/32") {
		t.Fatalf("vxlan %+v", st.VXLAN)
	}
	if st.MTU != 1450 || st.BridgeAddrs[0] != pfx("10.244.0.1/24") {
		t.Errorf("mtu %d, bridge %v", st.MTU, st.BridgeAddrs)
	}
	if len(st.ClusterCIDRs) != 3 {
		t.Errorf("cluster CIDRs %v", st.ClusterCIDRs)
	}

	routed, _ := Desired(self, []Node{near, far}, Routed, up, 0)
	if routed.VXLAN != nil || routed.MTU != 1500 || len(routed.Routes) != 2 || routed.Routes[1].Device != "eth0" {
		t.Errorf("routed %+v", routed)
	}
	vx, _ := Desired(self, []Node{near}, VXLAN, up, 1400)
	if vx.VXLAN == nil || vx.Routes[0].Device != VXLANDevice || vx.MTU != 1400 {
		t.Errorf("vxlan %+v", vx)
	}
	// Over an IPv6 underlay VXLAN costs 70 bytes, not 50.
	self6 := Node{Name: "a6", InternalIP: addr("fd00:2::11"), PodCIDRs: []netip.Prefix{pfx("fd00:244:0:1::/64")}}
	peer6 := Node{Name: "b6", InternalIP: addr("fd00:2::12"), PodCIDRs: []netip.Prefix{pfx("fd00:244:0:2::/64")}}
	up6 := Uplink{Name: "eth0", Addr: pfx("fd00:2::11/64"), MTU: 1500, Prefixes: []netip.Prefix{pfx("fd00:2::11/64")}}
	if st, err := Desired(self6, []Node{peer6}, VXLAN, up6, 0); err != nil || st.MTU != 1430 || st.VXLAN == nil || st.VXLAN.Local != addr("fd00:2::11") {
		t.Errorf("vxlan over IPv6: %+v, %v; want MTU 1430 and the IPv6 address as the local VTEP", st, err)
	}
	if _, err := Desired(Node{Name: "x"}, nil, Auto, up, 0); err == nil {
		t.Error("a node without podCIDR got a state")
	}
	if m := VTEPMAC(addr("192.0.2.12")).String(); m != "0e:be:c0:00:02:0c" {
		t.Errorf("VTEP MAC %s", m)
	}
	// IPv6: two nodes alike in their last 32 bits get different MACs, and
	// every MAC is unicast and locally administered.
	a6, b6 := VTEPMAC(addr("fd00:1::11")), VTEPMAC(addr("fd00:2::11"))
	if a6.String() == b6.String() {
		t.Errorf("fd00:1::11 and fd00:2::11 share the VTEP MAC %s", a6)
	}
	for _, m := range []net.HardwareAddr{a6, b6, VTEPMAC(addr("192.0.2.12"))} {
		if m[0]&0x01 != 0 || m[0]&0x02 == 0 {
			t.Errorf("VTEP MAC %s is not a locally administered unicast address", m)
		}
	}
	if _, err := ParseMode("ospf"); err == nil {
		t.Error("mode ospf accepted")
	}
	// BGP: no route to peers (the speaker installs them), no overlay
	// overhead.
	bgp, err := Desired(self, []Node{near}, BGP, up, 0)
	if err != nil || len(bgp.Routes) != 0 || bgp.VXLAN != nil || bgp.MTU != 1500 {
		t.Errorf("bgp %+v, %v", bgp, err)
	}
}

// A dual-stack peer's IPv6 range goes via its IPv6 InternalIP when that is
// on the uplink's IPv6 subnet and the mode routes directly; otherwise over
// the overlay (IPv6 inside the IPv4 underlay), except in routed mode, which
// has none.
func TestDesiredDualStack(t *testing.T) {
	self := Node{Name: "a", InternalIP: addr("192.0.2.11"), InternalIP6: addr("fd00:2::11"),
		PodCIDRs: []netip.Prefix{pfx("fd00:244:0:1::/64"), pfx("10.244.0.0/24")}}
	near := Node{Name: "b", InternalIP: addr("192.0.2.12"), InternalIP6: addr("fd00:2::12"),
		PodCIDRs: []netip.Prefix{pfx("10.244.1.0/24"), pfx("fd00:244:0:2::/64")}}
	off6 := Node{Name: "c", InternalIP: addr("192.0.2.13"), InternalIP6: addr("fd00:99::13"),
		PodCIDRs: []netip.Prefix{pfx("10.244.2.0/24"), pfx("fd00:244:0:3::/64")}}
	v4only := Node{Name: "d", InternalIP: addr("192.0.2.14"),
		PodCIDRs: []netip.Prefix{pfx("10.244.3.0/24"), pfx("fd00:244:0:4::/64")}}
	up := Uplink{Name: "eth0", Addr: pfx("192.0.2.11/24"), MTU: 1500,
		Prefixes: []netip.Prefix{pfx("192.0.2.11/24"), pfx("fd00:2::11/64")}}
	peers := []Node{self, near, off6, v4only}

	type route struct{ dst, via string }
	for _, tc := range []struct {
		mode Mode
		want []route
	}{
		{Routed, []route{{"10.244.1.0/24", "192.0.2.12"}, {"fd00:244:0:2::/64", "fd00:2::12"}, {"10.244.2.0/24", "192.0.2.13"}, {"10.244.3.0/24", "192.0.2.14"}}},
		{Auto, []route{{"10.244.1.0/24", "192.0.2.12"}, {"fd00:244:0:2::/64", "fd00:2::12"}, {"10.244.2.0/24", "192.0.2.13"},
			{"fd00:244:0:3::/64", "fd00:244:0:3::"}, {"10.244.3.0/24", "192.0.2.14"}, {"fd00:244:0:4::/64", "fd00:244:0:4::"}}},
		{VXLAN, []route{{"10.244.1.0/24", "10.244.1.0"}, {"fd00:244:0:2::/64", "fd00:244:0:2::"}, {"10.244.2.0/24", "10.244.2.0"},
			{"fd00:244:0:3::/64", "fd00:244:0:3::"}, {"10.244.3.0/24", "10.244.3.0"}, {"fd00:244:0:4::/64", "fd00:244:0:4::"}}},
	} {
		st, err := Desired(self, peers, tc.mode, up, 0)
		if err != nil {
			t.Fatal(err)
		}
		var got []route
		for _, r := range st.Routes {
			got = append(got, route{r.Dst.String(), r.Via.String()})
		}
		if fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("%s: routes %v, want %v", tc.mode, got, tc.want)
		}
		for _, r := range st.Routes {
			// Via the range's own network address: over the overlay.
			if overlay := r.Via == r.Dst.Masked().Addr(); overlay != (r.Device == VXLANDevice && r.OnLink) {
				t.Errorf("%s: route %+v: want %s (onlink) exactly for the overlay's routes", tc.mode, r, VXLANDevice)
			}
		}
		if st.VXLAN != nil {
			if st.VXLAN.Addr != pfx("10.244.0.0/32") {
				t.Errorf("%s: overlay address %v, want the IPv4 range's network address", tc.mode, st.VXLAN.Addr)
			}
			for _, p := range st.VXLAN.Peers {
				if !p.Remote.Is4() || p.MAC.String() != VTEPMAC(p.Remote).String() {
					t.Errorf("%s: overlay peer %+v: want the IPv4 underlay", tc.mode, p)
				}
			}
		}
		if len(st.BridgeAddrs) != 2 || st.BridgeAddrs[0] != pfx("10.244.0.1/24") || st.BridgeAddrs[1] != pfx("fd00:244:0:1::1/64") {
			t.Errorf("%s: bridge addresses %v, want one gateway per family", tc.mode, st.BridgeAddrs)
		}
	}
}

func TestToNodeDualStack(t *testing.T) {
	for _, tc := range []struct {
		addrs   []string
		ip, ip6 string
	}{
		{[]string{"192.0.2.11", "fd00:2::11"}, "192.0.2.11", "fd00:2::11"},
		{[]string{"fd00:2::11", "192.0.2.11"}, "192.0.2.11", "fd00:2::11"},
		{[]string{"fd00:2::11"}, "fd00:2::11", "invalid IP"},
		{[]string{"192.0.2.11"}, "192.0.2.11", "invalid IP"},
	} {
		n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n"}}
		for _, a := range tc.addrs {
			n.Status.Addresses = append(n.Status.Addresses, corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: a})
		}
		n.Status.Addresses = append(n.Status.Addresses, corev1.NodeAddress{Type: corev1.NodeHostName, Address: "n"})
		got := toNode(n)
		if got.InternalIP.String() != tc.ip || got.InternalIP6.String() != tc.ip6 {
			t.Errorf("InternalIPs %v: got %v and %v, want %s and %s", tc.addrs, got.InternalIP, got.InternalIP6, tc.ip, tc.ip6)
		}
	}
}
