package l2announce

import (
	"fmt"
	"net"
	"net/netip"
	"testing"
)

func TestInterfaces(t *testing.T) {
	mac := net.HardwareAddr{2, 0, 0, 0, 0, 1}
	links := []Link{
		{Name: "lo", Virtual: true, Prefixes: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/8")}},
		{Name: "eth0", MAC: mac, Prefixes: []netip.Prefix{netip.MustParsePrefix("198.18.0.11/24")}},
		{Name: "eth1", MAC: mac, Prefixes: []netip.Prefix{netip.MustParsePrefix("10.0.0.5/16"), netip.MustParsePrefix("2001:db8::5/64")}},
		{Name: "bond0", MAC: mac},
		{Name: "enp1s0", MAC: mac, Enslaved: true},
		{Name: "berth0", MAC: mac, Virtual: true, Prefixes: []netip.Prefix{netip.MustParsePrefix("10.244.1.1/24")}},
		{Name: "tun0", Prefixes: []netip.Prefix{netip.MustParsePrefix("192.0.2.1/24")}}, // no Ethernet address
	}
	for _, c := range []struct {
		patterns []string
		samples  []string
		want     string
	}{
		{nil, []string{"198.18.0.200"}, "[eth0]"},
		{nil, []string{"198.18.0.200", "2001:db8::100"}, "[eth0 eth1]"},
		{nil, []string{"203.0.113.10"}, "[bond0 eth0 eth1]"}, // no subnet holds it: every physical port
		{nil, []string{"192.0.2.10"}, "[bond0 eth0 eth1]"},   // only a link without Ethernet holds it
		{[]string{"eth*"}, []string{"203.0.113.10"}, "[eth0 eth1]"},
		{[]string{"bond0", "enp?s0"}, nil, "[bond0 enp1s0]"},
		{[]string{"nothing"}, []string{"198.18.0.200"}, "[]"},
	} {
		var samples []netip.Addr
		for _, s := range c.samples {
			samples = append(samples, netip.MustParseAddr(s))
		}
		if got := fmt.Sprint(Interfaces(c.patterns, samples, links)); got != c.want {
			t.Errorf("patterns %v, samples %v: %s, want %s", c.patterns, c.samples, got, c.want)
		}
	}
}
