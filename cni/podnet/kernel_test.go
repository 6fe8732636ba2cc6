package podnet_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/berthnet/berth/cni"
	"github.com/berthnet/berth/cni/podnet"
	"github.com/berthnet/berth/lab/netns"
	"github.com/berthnet/berth/test/netnstest"
)

func TestMain(m *testing.M) { netnstest.Main(m) }

// cluster is two nodes and an outside host on one LAN segment, each node with
// one pod attached by the plugin's own code.
type cluster struct {
	nodes   []*netns.Namespace
	pods    []*netns.Namespace
	info    []podnet.Node
	outside *netns.Namespace
}

func newCluster(t testing.TB) *cluster {
	lan := netnstest.New(t)
	if err := lan.AddBridge("br0"); err != nil {
		t.Fatal(err)
	}
	c := &cluster{}
	plug := func(ns *netns.Namespace, port, cidr string) {
		if err := netns.Veth(lan, port, ns, "eth0"); err != nil {
			t.Fatal(err)
		}
		if err := lan.SetMaster(port, "br0"); err != nil {
			t.Fatal(err)
		}
		if err := ns.AddAddress("eth0", cidr); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 2 {
		n := netnstest.New(t)
		plug(n, fmt.Sprintf("n%d", i), fmt.Sprintf("192.0.2.%d/24", 11+i))
		c.nodes = append(c.nodes, n)
		c.info = append(c.info, podnet.Node{
			Name:       fmt.Sprintf("node%d", i),
			InternalIP: netip.MustParseAddr(fmt.Sprintf("192.0.2.%d", 11+i)),
			PodCIDRs:   []netip.Prefix{netip.MustParsePrefix(fmt.Sprintf("10.244.%d.0/24", i))},
		})
	}
	c.outside = netnstest.New(t)
	plug(c.outside, "out", "192.0.2.100/24")
	return c
}

// apply runs the agent's logic on node i, as berth-agent in that node would.
func (c *cluster) apply(t testing.TB, i int, mode podnet.Mode, peers []podnet.Node) {
	t.Helper()
	err := c.nodes[i].Do(func() error {
		up, err := podnet.FindUplink(c.info[i].InternalIP)
		if err != nil {
			return err
		}
		st, err := podnet.Desired(c.info[i], peers, mode, up, 0)
		if err != nil {
			return err
		}
		a, err := podnet.NewApplier()
		if err != nil {
			return err
		}
		return a.Apply(context.Background(), st, up)
	})
	if err != nil {
		t.Fatalf("apply on node %d: %v", i, err)
	}
}

// addPods attaches one pod per node with the plugin's ADD.
func (c *cluster) addPods(t testing.TB) {
	t.Helper()
	for i, n := range c.nodes {
		pod := netnstest.New(t)
		var cidrs []string
		for _, p := range c.info[i].PodCIDRs {
			cidrs = append(cidrs, p.String())
		}
		conf, _ := json.Marshal(map[string]any{"cniVersion": "1.1.0", "name": "berth", "type": cni.PluginType,
			"podCIDRs": cidrs, "dataDir": t.TempDir()})
		if err := n.Do(func() error {
			_, err := cni.Add(cni.Request{ContainerID: fmt.Sprintf("pod%d", i), Netns: pod.Path(), IfName: "eth0", Config: conf})
			return err
		}); err != nil {
			t.Fatalf("ADD on node %d: %v", i, err)
		}
		c.pods = append(c.pods, pod)
	}
}

// start runs the agent's logic on every node in mode, attaches one pod per
// node, and checks every path.
func (c *cluster) start(t testing.TB, mode podnet.Mode) {
	t.Helper()
	for i := range c.nodes {
		c.apply(t, i, mode, c.info)
	}
	c.addPods(t)
	c.checkPaths(t)
}

func podIP(i int) string { return fmt.Sprintf("10.244.%d.2", i) }

func (c *cluster) checkPaths(t testing.TB) {
	t.Helper()
	// Pod to pod across nodes: the server sees the client pod's own IP.
	if seen := netnstest.Connect(t, c.pods[1], c.pods[0], podIP(1)+":8080"); !strings.HasPrefix(seen, podIP(0)+":") {
		t.Errorf("pod1 saw pod0 as %s: want no NAT", seen)
	}
	if seen := netnstest.Connect(t, c.pods[0], c.pods[1], podIP(0)+":8080"); !strings.HasPrefix(seen, podIP(1)+":") {
		t.Errorf("pod0 saw pod1 as %s: want no NAT", seen)
	}
	// Node to pod, on every node, to its own pod and the other's.
	for n := range c.nodes {
		for p := range c.pods {
			netnstest.Connect(t, c.pods[p], c.nodes[n], podIP(p)+":8081")
		}
	}
	// Pod to outside the cluster: masqueraded to the node's address.
	if seen := netnstest.Connect(t, c.outside, c.pods[0], "192.0.2.100:8082"); !strings.HasPrefix(seen, "192.0.2.11:") {
		t.Errorf("outside host saw pod0 as %s: want the node's address 192.0.2.11", seen)
	}
}

func TestRoutedMode(t *testing.T) {
	c := newCluster(t)
	c.start(t, podnet.Routed)

	// Drift: a deleted route comes back with the next apply.
	h := c.nodes[0].Netlink()
	_, dst, _ := net.ParseCIDR("10.244.1.0/24")
	if err := h.RouteDel(&netlink.Route{Dst: dst}); err != nil {
		t.Fatal(err)
	}
	c.apply(t, 0, podnet.Routed, c.info)
	c.checkPaths(t)

	// A node that is gone loses its route.
	c.apply(t, 0, podnet.Routed, c.info[:1])
	routes, err := h.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Protocol: podnet.RouteProtocol}, netlink.RT_FILTER_PROTOCOL)
	if err != nil {
		t.Fatal(err)
	}
	if len(routes) != 0 {
		t.Errorf("routes to a deleted node remain: %v", routes)
	}
}

// dualStack gives the nodes and the outside host IPv6 addresses on the LAN
// too, and each node an IPv6 pod range, as a dual-stack cluster has.
func (c *cluster) dualStack(t testing.TB) {
	t.Helper()
	for i, n := range c.nodes {
		ip := netip.MustParseAddr(fmt.Sprintf("fd00:2::%d", 11+i))
		if err := n.AddAddress("eth0", ip.String()+"/64"); err != nil {
			t.Fatal(err)
		}
		c.info[i].InternalIP6 = ip
		c.info[i].PodCIDRs = append(c.info[i].PodCIDRs, netip.MustParsePrefix(fmt.Sprintf("fd00:244:0:%d::/64", i)))
	}
	if err := c.outside.AddAddress("eth0", "fd00:2::100/64"); err != nil {
		t.Fatal(err)
	}
}

// checkPaths6 checks the IPv6 paths: pod to pod across nodes, the server
// seeing the client pod's own address, and every node to every pod.
func (c *cluster) checkPaths6(t testing.TB) {
	t.Helper()
	hp := func(ip string, port int) string { return net.JoinHostPort(ip, fmt.Sprint(port)) }
	if seen := netnstest.Connect(t, c.pods[1], c.pods[0], hp(podIP6(1), 8080)); !strings.HasPrefix(seen, "["+podIP6(0)+"]:") {
		t.Errorf("pod1 saw pod0 as %s over IPv6: want no NAT", seen)
	}
	if seen := netnstest.Connect(t, c.pods[0], c.pods[1], hp(podIP6(0), 8080)); !strings.HasPrefix(seen, "["+podIP6(1)+"]:") {
		t.Errorf("pod0 saw pod1 as %s over IPv6: want no NAT", seen)
	}
	for n := range c.nodes {
		for p := range c.pods {
			netnstest.Connect(t, c.pods[p], c.nodes[n], hp(podIP6(p), 8081))
		}
	}
}

func podIP6(i int) string { return netip.MustParseAddr(fmt.Sprintf("fd00:244:0:%d::2", i)).String() }

// In routed mode a dual-stack cluster's IPv6 pod ranges are routed via the
// nodes' IPv6 addresses: pod to pod without NAT, node to pod, and out of
// the cluster masqueraded to the node's IPv6 address, beside IPv4.
func TestRoutedModeDualStack(t *testing.T) {
	c := newCluster(t)
	c.dualStack(t)
	c.start(t, podnet.Routed)
	c.checkPaths6(t)
	if seen := netnstest.Connect(t, c.outside, c.pods[0], "[fd00:2::100]:8082"); !strings.HasPrefix(seen, "[fd00:2::11]:") {
		t.Errorf("outside host saw pod0 as %s: want the node's address fd00:2::11", seen)
	}
}

// In VXLAN mode a dual-stack cluster's IPv6 pod ranges ride the overlay
// too, inside the IPv4 underlay: pod to pod without NAT and node to pod
// over IPv6, beside the IPv4 paths.
func TestVXLANModeDualStack(t *testing.T) {
	c := newCluster(t)
	c.dualStack(t)
	c.start(t, podnet.VXLAN)
	c.checkPaths6(t)
	// The IPv6 range goes over berth.vxlan, not via the nodes' IPv6
	// addresses on the LAN.
	c.checkIPv6OverVXLAN(t)
}

// checkIPv6OverVXLAN checks that node0 routes node1's IPv6 pods over
// berth.vxlan.
func (c *cluster) checkIPv6OverVXLAN(t *testing.T) {
	t.Helper()
	routes, err := c.nodes[0].Netlink().RouteGet(net.ParseIP(podIP6(1)))
	if err != nil {
		t.Fatal(err)
	}
	vx, err := c.nodes[0].Link(podnet.VXLANDevice)
	if err != nil {
		t.Fatal(err)
	}
	if len(routes) != 1 || routes[0].LinkIndex != vx.Attrs().Index {
		t.Errorf("node0's route to %s: %+v, want via %s", podIP6(1), routes, podnet.VXLANDevice)
	}
}

// An operator moves a dual-stack cluster from routed to vxlan mode (helm
// upgrade --set podNetwork.mode=vxlan): the agent replaces its route to
// each peer's IPv6 range via the peer's IPv6 address on the LAN with one
// over berth.vxlan, which the kernel refuses while the old one is in place
// (an onlink gateway inside a range routed over another device); the
// paths of both families work after the switch.
func TestRoutedToVXLANDualStack(t *testing.T) {
	c := newCluster(t)
	c.dualStack(t)
	c.start(t, podnet.Routed)
	c.checkPaths6(t)
	for i := range c.nodes {
		c.apply(t, i, podnet.VXLAN, c.info)
	}
	c.checkPaths(t)
	c.checkPaths6(t)
	c.checkIPv6OverVXLAN(t)
}

// IPv6-only nodes: the overlay's underlay is IPv6, where VXLAN costs 70
// bytes, and pods reach each other across nodes over it without NAT.
func TestVXLANModeIPv6Underlay(t *testing.T) {
	c := newCluster(t)
	c.dualStack(t)
	for i := range c.info {
		c.info[i].InternalIP, c.info[i].InternalIP6 = c.info[i].InternalIP6, netip.Addr{}
		c.info[i].PodCIDRs = c.info[i].PodCIDRs[1:] // the IPv6 range alone
	}
	for i := range c.nodes {
		c.apply(t, i, podnet.VXLAN, c.info)
	}
	c.addPods(t)
	l, err := c.pods[0].Link("eth0")
	if err != nil {
		t.Fatal(err)
	}
	if l.Attrs().MTU != 1430 {
		t.Errorf("pod MTU %d, want 1430 (uplink 1500 minus VXLAN's 70 over IPv6)", l.Attrs().MTU)
	}
	c.checkPaths6(t)
}

func TestVXLANMode(t *testing.T) {
	c := newCluster(t)
	c.start(t, podnet.VXLAN)
	// Pods get the overlay's MTU.
	l, err := c.pods[0].Link("eth0")
	if err != nil {
		t.Fatal(err)
	}
	if l.Attrs().MTU != 1450 {
		t.Errorf("pod MTU %d, want 1450 (uplink 1500 minus VXLAN's 50)", l.Attrs().MTU)
	}
	// Drift: a deleted FDB entry comes back.
	h := c.nodes[0].Netlink()
	vx, err := h.LinkByName(podnet.VXLANDevice)
	if err != nil {
		t.Fatal(err)
	}
	fdbs, err := h.NeighList(vx.Attrs().Index, 7 /* AF_BRIDGE */)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fdbs {
		if f.IP != nil {
			if err := h.NeighDel(&f); err != nil {
				t.Fatal(err)
			}
		}
	}
	c.apply(t, 0, podnet.VXLAN, c.info)
	c.checkPaths(t)
}
