package netpol

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/berthnet/berth/internal/nftrules"
	"github.com/berthnet/berth/internal/nftrules/nftlist"
	"github.com/berthnet/berth/lab/netns"
	"github.com/berthnet/berth/test/netnstest"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
)

func TestMain(m *testing.M) { netnstest.Main(m) }

// kernelNft returns the netlink backend of the berth-netpol table in ns.
func kernelNft(t testing.TB, ns *netns.Namespace) *nftrules.Netlink {
	t.Helper()
	var nft *nftrules.Netlink
	if err := ns.Do(func() (err error) {
		nft, err = nftrules.NewNetlink(Table)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = nft.Close() })
	return nft
}

// kernelSync sends the diff from prev to next to the kernel of ns.
func kernelSync(t testing.TB, nft *nftrules.Netlink, prev *nftrules.Ruleset, next nftrules.Ruleset) {
	t.Helper()
	tx := nftrules.NewTx(Table)
	nftrules.Sync(tx, prev, next)
	if err := nft.Apply(context.Background(), tx); err != nil {
		t.Fatalf("apply: %v\n%s", err, tx)
	}
}

// listsAsWritten checks that nft lists every chain of the table in ns
// with the very text of rs, and returns the listing.
func listsAsWritten(t *testing.T, ns *netns.Namespace, rs nftrules.Ruleset) string {
	t.Helper()
	return nftlist.ListsAsWritten(t, ns, Table, nftrules.WithBase(rs).Chains)
}

// TestKernelAcceptsTable: the kernel (over netlink) takes the golden table
// whole, then each change the property test makes, incrementally, and a
// rebuild over the existing table; nft lists every chain back as written.
func TestKernelAcceptsTable(t *testing.T) {
	ns := netnstest.New(t)
	nft := kernelNft(t, ns)
	in := goldenInput()
	rs := Compile(in)
	kernelSync(t, nft, nil, rs)
	listsAsWritten(t, ns, rs)
	// Relabel a pod, drop a policy, change the ports of another.
	in.Pods = pods()
	in.Pods[1].Labels = map[string]string{"pod": "c"}
	in.Policies = goldenPolicies()[1:]
	in.Policies[1].Spec.Ingress[0].Ports = []networkingv1.NetworkPolicyPort{port(corev1.ProtocolUDP, 53)}
	// Names as long as the API allows: comments and names are cut to the
	// kernel's limits.
	long := withIngress(policy("x", strings.Repeat("n", 253), sel()), from(podPeer(sel("pod=b"))))
	for i := range 12 {
		p := policy("x", fmt.Sprintf("%s%d", strings.Repeat("m", 60), i), sel())
		in.Policies = append(in.Policies, p)
	}
	in.Policies = append(in.Policies, long)
	next := Compile(in)
	kernelSync(t, nft, &rs, next)
	listsAsWritten(t, ns, next)
	kernelSync(t, nft, nil, next)
	out := listsAsWritten(t, ns, next)
	for _, want := range []string{"chain in-x/a", "udp dport 53", "10.0.3.4-10.0.255.255", "goto in-z/a"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("listed table lacks %q:\n%s", want, out)
		}
	}
}

// bridgeNode is a node namespace with berth0 at 10.77.0.1/24 and
// fd77::1/64 and pods bridged on it, each in its own namespace with the
// addresses given (comma-separated): the pod network's shape.
type bridgeNode struct {
	node *netns.Namespace
	pods map[string]*netns.Namespace
}

func newBridgeNode(t testing.TB, pods map[string]string) *bridgeNode {
	t.Helper()
	b := &bridgeNode{node: netnstest.New(t), pods: map[string]*netns.Namespace{}}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(b.node.AddBridge("berth0"))
	must(b.node.AddAddress("berth0", "10.77.0.1/24"))
	must(b.node.AddAddress("berth0", "fd77::1/64"))
	// Bridged traffic goes through the inet hooks (br_netfilter), as the
	// agent makes sure on every node.
	must(b.node.Sysctl("net/bridge/bridge-nf-call-iptables", "1"))
	must(b.node.Sysctl("net/bridge/bridge-nf-call-ip6tables", "1"))
	i := 0
	for name, ip := range pods {
		i++
		ns := netnstest.New(t)
		host := fmt.Sprintf("veth%d", i)
		must(netns.Veth(b.node, host, ns, "eth0"))
		must(b.node.SetMaster(host, "berth0"))
		for _, a := range strings.Split(ip, ",") {
			bits := "/24"
			if strings.Contains(a, ":") {
				bits = "/64"
			}
			must(ns.AddAddress("eth0", a+bits))
		}
		must(ns.Up("lo"))
		b.pods[name] = ns
	}
	return b
}

// serve listens on TCP port in ns until the test ends.
func serve(t testing.TB, ns *netns.Namespace, port int) {
	t.Helper()
	var ln net.Listener
	if err := ns.Do(func() (err error) {
		ln, err = net.Listen("tcp", fmt.Sprintf(":%d", port))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_, _ = c.Write([]byte("ok"))
			c.Close()
		}
	}()
}

// reaches says whether a TCP exchange from ns to addr completes; a
// dropped SYN shows as a timeout.
func reaches(ns *netns.Namespace, addr string) bool {
	var got []byte
	err := ns.Do(func() error {
		c, err := net.DialTimeout("tcp", addr, 700*time.Millisecond)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(2 * time.Second))
		got = make([]byte, 2)
		_, err = c.Read(got)
		return err
	})
	return err == nil && string(got) == "ok"
}

// reachable is reaches for a connection that should work: it tries until
// a deadline, because a fresh bridge can lose the first neighbour
// solicitation (seen without any table: the first attempt times out, the
// next one at the solicitation's retry succeeds). A connection that
// should fail is tried once with reaches.
func reachable(ns *netns.Namespace, addr string, want bool) bool {
	if !want {
		return reaches(ns, addr)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if reaches(ns, addr) {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
	}
}

// TestKernelBridgedPods: on a real bridge, the compiled table lets a
// reach b's port 80 (and the replies back), refuses a on b's port 81,
// lets the node reach b on any port, leaves a (not isolated) open, and
// drops an address in the pod range that is no pod it knows.
func TestKernelBridgedPods(t *testing.T) {
	b := newBridgeNode(t, map[string]string{"a": "10.77.0.2", "b": "10.77.0.3", "new": "10.77.0.9"})
	for _, ns := range b.pods {
		serve(t, ns, 80)
		serve(t, ns, 81)
	}
	serve(t, b.node, 80)
	ps := []Pod{
		{Namespace: "x", Name: "a", Labels: map[string]string{"pod": "a"}, IPs: []netip.Addr{netip.MustParseAddr("10.77.0.2")}, Node: "n1"},
		{Namespace: "x", Name: "b", Labels: map[string]string{"pod": "b"}, IPs: []netip.Addr{netip.MustParseAddr("10.77.0.3")}, Node: "n1"},
	}
	pol := withIngress(policy("x", "a-to-b-80", sel("pod=b")), ports(from(podPeer(sel("pod=a"))), port("", 80)))
	in := Input{
		Policies: []networkingv1.NetworkPolicy{pol}, Namespaces: []Namespace{{Name: "x"}}, Pods: ps, Node: "n1",
		NodeIPs: []netip.Addr{netip.MustParseAddr("10.77.0.1")}, PodCIDRs: []netip.Prefix{netip.MustParsePrefix("10.77.0.0/24")},
	}
	nft := kernelNft(t, b.node)
	rs := Compile(in)
	kernelSync(t, nft, nil, rs)
	for _, c := range []struct {
		from *netns.Namespace
		name string
		to   string
		want bool
	}{
		{b.pods["a"], "a", "10.77.0.3:80", true},
		{b.pods["a"], "a", "10.77.0.3:81", false},
		{b.node, "node", "10.77.0.3:81", true},
		{b.pods["b"], "b", "10.77.0.2:81", true},
		{b.pods["new"], "new (unknown)", "10.77.0.2:80", false},
		{b.pods["a"], "a", "10.77.0.9:80", false},
		// The node to its own berth0 address, in the pod range: over lo.
		{b.node, "node", "10.77.0.1:80", true},
	} {
		if got := reachable(c.from, c.to, c.want); got != c.want {
			t.Errorf("%s -> %s: reached %v, want %v", c.name, c.to, got, c.want)
		}
	}
	// The new pod becomes known (not isolated): it is reachable now, and
	// b's ports follow a policy change with no stale rule left.
	in.Pods = append(in.Pods, Pod{Namespace: "x", Name: "new", Labels: map[string]string{"pod": "new"}, IPs: []netip.Addr{netip.MustParseAddr("10.77.0.9")}, Node: "n1"})
	in.Policies[0].Spec.Ingress[0].Ports = []networkingv1.NetworkPolicyPort{port("", 81)}
	next := Compile(in)
	kernelSync(t, nft, &rs, next)
	for _, c := range []struct {
		from *netns.Namespace
		name string
		to   string
		want bool
	}{
		{b.pods["new"], "new", "10.77.0.2:80", true},
		{b.pods["a"], "a", "10.77.0.3:81", true},
		{b.pods["a"], "a", "10.77.0.3:80", false},
	} {
		if got := reachable(c.from, c.to, c.want); got != c.want {
			t.Errorf("after the change: %s -> %s: reached %v, want %v", c.name, c.to, got, c.want)
		}
	}
	// The refused SYNs were counted on the policy's counter.
	var out []byte
	if err := b.node.Do(func() (err error) {
		out, err = exec.Command("nft", "list", "counter", "inet", Table, "drop-x/a-to-b-80").CombinedOutput()
		return err
	}); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if strings.Contains(string(out), "packets 0 ") {
		t.Errorf("the policy's drop counter counted nothing:\n%s", out)
	}
}

// TestKernelBridgedPodsIPv6: the same over IPv6 (bridged through the ip6
// hooks; neighbour discovery passes isolated pods).
func TestKernelBridgedPodsIPv6(t *testing.T) {
	b := newBridgeNode(t, map[string]string{"a": "fd77::2", "b": "fd77::3", "c": "fd77::4"})
	for _, ns := range b.pods {
		serve(t, ns, 80)
		serve(t, ns, 81)
	}
	pod := func(name, ip string) Pod {
		return Pod{Namespace: "x", Name: name, Labels: map[string]string{"pod": name}, IPs: []netip.Addr{netip.MustParseAddr(ip)}, Node: "n1"}
	}
	in := Input{
		Policies: []networkingv1.NetworkPolicy{
			withIngress(policy("x", "a-to-b-80", sel("pod=b")), ports(from(podPeer(sel("pod=a"))), port("", 80))),
			withEgress(policy("x", "c-to-a", sel("pod=c"), egress), to(podPeer(sel("pod=a")))),
		},
		Namespaces: []Namespace{{Name: "x"}}, Pods: []Pod{pod("a", "fd77::2"), pod("b", "fd77::3"), pod("c", "fd77::4")}, Node: "n1",
		NodeIPs: []netip.Addr{netip.MustParseAddr("fd77::1")}, PodCIDRs: []netip.Prefix{netip.MustParsePrefix("fd77::/64")},
	}
	kernelSync(t, kernelNft(t, b.node), nil, Compile(in))
	for _, c := range []struct {
		from, to string
		want     bool
	}{
		{"a", "[fd77::3]:80", true},
		{"a", "[fd77::3]:81", false},
		{"b", "[fd77::2]:81", true},
		{"c", "[fd77::2]:80", true},  // c, isolated for egress, may reach a
		{"c", "[fd77::3]:80", false}, // and nothing else
	} {
		if got := reachable(b.pods[c.from], c.to, c.want); got != c.want {
			t.Errorf("%s -> %s: reached %v, want %v", c.from, c.to, got, c.want)
		}
	}
	if !reachable(b.node, "[fd77::3]:81", true) {
		t.Errorf("the node does not reach b over IPv6")
	}
}

// TestKernelCounterMetrics: the syncer's drop metrics come from the
// kernel's counters, one series per policy isolating a pod of the node,
// and the unknown-pod one.
func TestKernelCounterMetrics(t *testing.T) {
	ns := netnstest.New(t)
	s := NewSyncer(kernelNft(t, ns))
	if err := ns.Do(func() error { return s.Sync(context.Background(), goldenInput()) }); err != nil {
		t.Fatal(err)
	}
	// The netlink socket belongs to the namespace: Collect reads its
	// counters from any thread.
	ch := make(chan prometheus.Metric, 100)
	counterCollector{s}.Collect(ch)
	close(ch)
	n := 0
	for range ch {
		n++
	}
	// allow-b, deny-all, ns-y-and-c, to-serve, block, open: the policies
	// that isolate a pod of n1; and unknown-pod.
	if n != 7 {
		t.Errorf("%d drop series, want 7", n)
	}
}
