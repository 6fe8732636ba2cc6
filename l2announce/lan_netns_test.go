package l2announce

import (
	"fmt"
	"testing"

	"github.com/berthnet/berth/lab/netns"
	"github.com/berthnet/berth/test/netnstest"
)

// bridgedHosts makes a LAN (a bridge in a namespace of its own) and one
// namespace per address, each with eth0 on the bridge holding that address
// (CIDR form). The namespaces go with the test.
func bridgedHosts(t *testing.T, addrs ...string) []*netns.Namespace {
	t.Helper()
	lan := netnstest.New(t)
	if err := lan.AddBridge("br0"); err != nil {
		t.Fatal(err)
	}
	var spaces []*netns.Namespace
	for i, addr := range addrs {
		ns := netnstest.New(t)
		port := fmt.Sprintf("p%d", i)
		if err := netns.Veth(lan, port, ns, "eth0"); err != nil {
			t.Fatal(err)
		}
		if err := lan.SetMaster(port, "br0"); err != nil {
			t.Fatal(err)
		}
		if err := ns.AddAddress("eth0", addr); err != nil {
			t.Fatal(err)
		}
		spaces = append(spaces, ns)
	}
	return spaces
}
