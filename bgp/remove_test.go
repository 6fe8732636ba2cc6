package bgp

import (
	"net"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/berthnet/berth/test/netnstest"
)

// RemoveRoutes deletes the routes of protocol 99, both families, and no
// other route; a second call finds nothing and is no error.
func TestRemoveRoutes(t *testing.T) {
	ns := netnstest.New(t)
	h := ns.Netlink()
	if err := ns.AddBridge("up0"); err != nil {
		t.Fatal(err)
	}
	lo, err := h.LinkByName("up0")
	if err != nil {
		t.Fatal(err)
	}
	if err := h.LinkSetUp(lo); err != nil {
		t.Fatal(err)
	}
	for _, a := range []string{"192.0.2.1/24", "2001:db8::1/64"} {
		addr, _ := netlink.ParseAddr(a)
		addr.Flags = unix.IFA_F_NODAD
		if err := h.AddrAdd(lo, addr); err != nil {
			t.Fatal(err)
		}
	}
	add := func(dst, gw string, proto netlink.RouteProtocol) {
		_, d, _ := net.ParseCIDR(dst)
		if err := h.RouteAdd(&netlink.Route{LinkIndex: lo.Attrs().Index, Dst: d, Gw: net.ParseIP(gw), Protocol: proto}); err != nil {
			t.Fatalf("route %s: %v", dst, err)
		}
	}
	add("10.244.1.0/24", "192.0.2.2", 99)
	add("fd00:244:0:1::/64", "2001:db8::2", 99)
	add("10.9.0.0/16", "192.0.2.3", 4) // static, someone else's
	count := func(proto netlink.RouteProtocol) int {
		n := 0
		for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
			r, err := h.RouteListFiltered(fam, &netlink.Route{Protocol: proto}, netlink.RT_FILTER_PROTOCOL)
			if err != nil {
				t.Fatal(err)
			}
			n += len(r)
		}
		return n
	}
	if n := count(99); n != 2 {
		t.Fatalf("before: %d routes of protocol 99, want 2", n)
	}
	for i := range 2 {
		if err := ns.Do(RemoveRoutes); err != nil {
			t.Fatalf("removal %d: %v", i+1, err)
		}
		if n := count(99); n != 0 {
			t.Errorf("after removal %d: %d routes of protocol 99 remain", i+1, n)
		}
		if n := count(4); n != 1 {
			t.Errorf("after removal %d: %d static routes, want the 1 that is not Berth's", i+1, n)
		}
	}
}
