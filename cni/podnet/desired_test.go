package podnet

import (
	"net/netip"
	"testing"
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
	if _, err := Desired(Node{Name: "x"}, nil, Auto, up, 0); err == nil {
		t.Error("a node without podCIDR got a state")
	}
	if m := VTEPMAC(addr("192.0.2.12")).String(); m != "0e:be:c0:00:02:0c" {
		t.Errorf("VTEP MAC %s", m)
	}
	if _, err := ParseMode("bgp"); err == nil {
		t.Error("mode bgp accepted before it exists")
	}
}
