package podnet

import (
	"net/netip"
	"strings"
	"testing"
)

func TestValidateMTU(t *testing.T) {
	for _, tc := range []struct {
		mtu  int
		want string // "" accepted
	}{
		{0, ""}, {576, ""}, {1400, ""}, {9000, ""}, {65535, ""},
		{-1, "use 576 to 65535"}, {1, "use 576 to 65535"}, {575, "use 576 to 65535"}, {65536, "use 576 to 65535"},
	} {
		err := ValidateMTU(tc.mtu)
		if (err == nil) != (tc.want == "") || (err != nil && !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("ValidateMTU(%d) = %v, want %q", tc.mtu, err, tc.want)
		}
	}
}

// An --mtu override the node cannot carry is an error of Desired (the
// agent's sync reports it as a Node event), not a bridge and CNI config
// whose pods lose every large packet.
func TestDesiredMTUOverride(t *testing.T) {
	self := Node{Name: "a", InternalIP: addr("192.0.2.11"), PodCIDRs: []netip.Prefix{pfx("10.244.0.0/24")}}
	dual := Node{Name: "a", InternalIP: addr("192.0.2.11"), PodCIDRs: []netip.Prefix{pfx("10.244.0.0/24"), pfx("fd00:244::/64")}}
	peer := Node{Name: "b", InternalIP: addr("192.0.2.12"), PodCIDRs: []netip.Prefix{pfx("10.244.1.0/24")}}
	up := Uplink{Name: "eth0", Addr: pfx("192.0.2.11/24"), MTU: 1500}
	for _, tc := range []struct {
		name string
		self Node
		mode Mode
		mtu  int
		want string // "" accepted with MTU mtu
	}{
		{"routed at the uplink's", self, Routed, 1500, ""},
		{"routed below", self, Routed, 1400, ""},
		{"routed above the uplink", self, Routed, 1501, "above what uplink eth0 (MTU 1500) carries in routed mode (at most 1500)"},
		{"vxlan at the overlay's", self, VXLAN, 1450, ""},
		{"vxlan above the overlay's", self, VXLAN, 1500, "carries in vxlan mode (at most 1450)"},
		{"bgp like routed", self, BGP, 1501, "at most 1500"},
		{"out of range", self, Routed, 100, "use 576 to 65535"},
		{"IPv4 only may go low", self, Routed, 600, ""},
		{"IPv6 range needs 1280", dual, Routed, 1279, "below IPv6's minimum of 1280"},
		{"IPv6 range at 1280", dual, Routed, 1280, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, err := Desired(tc.self, []Node{peer}, tc.mode, up, tc.mtu)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.want == "" && st.MTU != tc.mtu:
				t.Fatalf("MTU %d, want %d", st.MTU, tc.mtu)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("error %v, want one saying %q", err, tc.want)
			}
		})
	}
}
