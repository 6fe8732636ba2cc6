package podnet_test

import (
	"fmt"
	"net"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/berthnet/berth/lab/netns"
	"github.com/berthnet/berth/test/netnstest"
)

// floorPath builds by hand, with netlink and none of Berth's code (no
// berth-cni, no agent, no nftables), the path a packet takes from a pod on
// one node to a pod on another, in one of three shapes:
//
//   - "bridged": each pod's veth on a bridge in its node, the nodes routing
//     to each other's pod ranges via their addresses on the lab's LAN: what
//     berth-cni and the agent build in routed mode, as Berth builds it;
//   - "vxlan": the same pods, the nodes joined by a VXLAN device (MTU 1450,
//     as Berth sets it);
//   - "p2p": no bridge, the pod's veth end in the node reached by a /32
//     route and the pod's gateway a fixed neighbour: the fewest hops a pod
//     network made of veth pairs can have on this kernel (which has neither
//     netkit nor the netfilter flowtable).
//
// Measured against the bare veth pair, it is what the kernel gives a design
// before Berth's code adds anything. It returns the server pod, the client
// pod and the server's address.
func floorPath(b *testing.B, shape string) (srv, cli *netns.Namespace, ip string) {
	b.Helper()
	must := func(err error) {
		b.Helper()
		if err != nil {
			b.Fatalf("floor %s: %v", shape, err)
		}
	}
	lan := netnstest.New(b)
	must(lan.AddBridge("br0"))
	mtu := 1500
	if shape == "vxlan" {
		mtu = 1450
	}
	var nodes, pods [2]*netns.Namespace
	var vtep [2]net.HardwareAddr
	for i := range 2 {
		n, p := netnstest.New(b), netnstest.New(b)
		nodes[i], pods[i] = n, p
		port := fmt.Sprintf("n%d", i)
		must(netns.Veth(lan, port, n, "eth0"))
		must(lan.SetMaster(port, "br0"))
		must(n.AddAddress("eth0", fmt.Sprintf("192.0.2.%d/24", 11+i)))
		must(n.Sysctl("net/ipv4/ip_forward", "1"))
		must(netns.Veth(n, "veth", p, "eth0"))
		host, err := n.Link("veth")
		must(err)
		eth0, err := p.Link("eth0")
		must(err)
		must(n.Netlink().LinkSetMTU(host, mtu))
		must(p.Netlink().LinkSetMTU(eth0, mtu))
		podIP := net.IPv4(10, 250, byte(i), 10)
		if shape == "p2p" {
			gw := net.IPv4(169, 254, 1, 1)
			must(p.AddAddress("eth0", podIP.String()+"/32"))
			must(p.Netlink().RouteAdd(&netlink.Route{LinkIndex: eth0.Attrs().Index, Dst: hostNet(gw), Scope: netlink.SCOPE_LINK}))
			must(p.AddRoute("default", gw.String()))
			must(p.Netlink().NeighAdd(&netlink.Neigh{LinkIndex: eth0.Attrs().Index, Family: unix.AF_INET,
				State: netlink.NUD_PERMANENT, IP: gw, HardwareAddr: host.Attrs().HardwareAddr}))
			must(n.Netlink().RouteAdd(&netlink.Route{LinkIndex: host.Attrs().Index, Dst: hostNet(podIP), Scope: netlink.SCOPE_LINK}))
		} else {
			must(n.AddBridge("br1"))
			must(n.AddAddress("br1", fmt.Sprintf("10.250.%d.1/24", i)))
			must(n.SetMaster("veth", "br1"))
			must(p.AddAddress("eth0", podIP.String()+"/24"))
			must(p.AddRoute("default", fmt.Sprintf("10.250.%d.1", i)))
		}
		if shape == "vxlan" {
			up, err := n.Link("eth0")
			must(err)
			must(n.Netlink().LinkAdd(&netlink.Vxlan{LinkAttrs: netlink.LinkAttrs{Name: "vx", MTU: mtu}, VxlanId: 1,
				VtepDevIndex: up.Attrs().Index, SrcAddr: net.IPv4(192, 0, 2, byte(11+i)), Port: 4789}))
			must(n.Up("vx"))
			must(n.AddAddress("vx", fmt.Sprintf("10.250.%d.0/32", i)))
			vx, err := n.Link("vx")
			must(err)
			vtep[i] = vx.Attrs().HardwareAddr
		}
	}
	for i, n := range nodes {
		j := 1 - i
		if shape != "vxlan" {
			must(n.AddRoute(fmt.Sprintf("10.250.%d.0/24", j), fmt.Sprintf("192.0.2.%d", 11+j)))
			continue
		}
		vx, err := n.Link("vx")
		must(err)
		idx := vx.Attrs().Index
		gw := net.IPv4(10, 250, byte(j), 0)
		must(n.Netlink().NeighAdd(&netlink.Neigh{LinkIndex: idx, Family: unix.AF_INET, State: netlink.NUD_PERMANENT, IP: gw, HardwareAddr: vtep[j]}))
		must(n.Netlink().NeighAppend(&netlink.Neigh{LinkIndex: idx, Family: unix.AF_BRIDGE, Flags: netlink.NTF_SELF,
			State: netlink.NUD_PERMANENT, IP: net.IPv4(192, 0, 2, byte(11+j)), HardwareAddr: vtep[j]}))
		must(n.Netlink().RouteAdd(&netlink.Route{LinkIndex: idx, Dst: &net.IPNet{IP: net.IPv4(10, 250, byte(j), 0), Mask: net.CIDRMask(24, 32)},
			Gw: gw, Flags: int(netlink.FLAG_ONLINK)}))
	}
	return pods[1], pods[0], "10.250.1.10"
}

func hostNet(ip net.IP) *net.IPNet { return &net.IPNet{IP: ip, Mask: net.CIDRMask(32, 32)} }
