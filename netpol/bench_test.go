package netpol

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/berthnet/berth/test/netnstest"
	networkingv1 "k8s.io/api/networking/v1"
)

// benchCluster is 1,000 policies over 2,000 pods in 20 namespaces on 3
// nodes: every policy selects the pods of one app label (40 pods, of
// which about 13 on each node) and admits another app, a team of
// namespaces, an ipBlock, or a named port; one in ten isolates egress too.
func benchCluster() Input {
	var in Input
	for n := range 20 {
		in.Namespaces = append(in.Namespaces, Namespace{Name: fmt.Sprintf("ns%02d", n), Labels: map[string]string{"team": fmt.Sprintf("t%d", n%5)}})
	}
	for i := range 2000 {
		in.Pods = append(in.Pods, Pod{
			Namespace: fmt.Sprintf("ns%02d", i%20), Name: fmt.Sprintf("p%04d", i),
			Labels:     map[string]string{"app": fmt.Sprintf("a%02d", i%50), "tier": fmt.Sprintf("t%d", i%4)},
			IPs:        []netip.Addr{netip.AddrFrom4([4]byte{10, 128 + byte(i%3), byte(i / 250), byte(1 + i%250)})},
			Node:       fmt.Sprintf("n%d", 1+i%3),
			NamedPorts: map[string]ContainerPort{"http": {Port: 8080}},
		})
	}
	for k := range 1000 {
		ns := fmt.Sprintf("ns%02d", k%20)
		p := policy(ns, fmt.Sprintf("pol%04d", k), sel(fmt.Sprintf("app=a%02d", k%50)))
		var peer networkingv1.NetworkPolicyPeer
		switch k % 4 {
		case 0:
			peer = podPeer(sel(fmt.Sprintf("app=a%02d", (k+1)%50)))
		case 1:
			peer = nsPeer(sel(fmt.Sprintf("team=t%d", k%5)))
		case 2:
			peer = bothPeer(sel(fmt.Sprintf("team=t%d", k%5)), sel(fmt.Sprintf("tier=t%d", k%4)))
		default:
			peer = blockPeer("10.0.0.0/8", fmt.Sprintf("10.%d.0.0/16", 128+k%3))
		}
		pt := port("", int32(8000+k%100))
		if k%5 == 0 {
			pt = namedPort("", "http")
		}
		p = withIngress(p, ports(from(peer), pt))
		if k%10 == 0 {
			p.Spec.PolicyTypes = []networkingv1.PolicyType{ingress, egress}
			p = withEgress(p, egressPorts(to(podPeer(sel(fmt.Sprintf("app=a%02d", (k+7)%50)))), namedPort("", "http"), portRange(9000, 9100)))
		}
		in.Policies = append(in.Policies, p)
	}
	in.Node = "n1"
	in.NodeIPs = []netip.Addr{netip.MustParseAddr("192.0.2.1")}
	in.PodCIDRs = []netip.Prefix{netip.MustParsePrefix("10.128.0.0/16")}
	return in
}

func rssMiB(b *testing.B) float64 {
	b.Helper()
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb / 1024
		}
	}
	return 0
}

// BenchmarkNetpolSync: the agent's syncer against the real kernel (netlink
// into a throwaway namespace) for node n1 of benchCluster: the full sync, one
// local pod added, one policy changed; and, as the baseline of the same
// run, the full sync of the same pods with no policy.
func BenchmarkNetpolSync(b *testing.B) {
	in := benchCluster()
	ctx := context.Background()
	var full, empty, compile, podAdded, polChanged, rss float64
	var st Stats
	for range b.N {
		for _, pols := range []bool{false, true} {
			ns := netnstest.New(b)
			s := NewSyncer(kernelNft(b, ns))
			cur := in
			if !pols {
				cur.Policies = nil
			}
			sync := func(in Input) float64 {
				start := time.Now()
				if err := ns.Do(func() error { return s.Sync(ctx, in) }); err != nil {
					b.Fatal(err)
				}
				return time.Since(start).Seconds()
			}
			runtime.GC()
			before := rssMiB(b)
			t := sync(cur)
			if !pols {
				empty += t
				continue
			}
			full += t
			rss += rssMiB(b) - before
			start := time.Now()
			rs := Compile(cur)
			compile += time.Since(start).Seconds()
			st = StatsOf(rs)
			// A pod starts on n1 with the labels of 40 others.
			added := cur
			added.Pods = append(append([]Pod{}, cur.Pods...), Pod{Namespace: "ns00", Name: "new", Labels: map[string]string{"app": "a00", "tier": "t0"},
				IPs: []netip.Addr{netip.MustParseAddr("10.128.200.1")}, Node: "n1"})
			podAdded += sync(added)
			// A policy's port changes.
			changed := added
			changed.Policies = append([]networkingv1.NetworkPolicy{}, added.Policies...)
			p := changed.Policies[3].DeepCopy()
			p.Spec.Ingress[0].Ports = []networkingv1.NetworkPolicyPort{port("", 7777)}
			changed.Policies[3] = *p
			polChanged += sync(changed)
		}
	}
	n := float64(b.N)
	b.ReportMetric(full/n, "s-full-sync")
	b.ReportMetric(empty/n, "s-baseline-no-policies")
	b.ReportMetric(compile/n, "s-compile")
	b.ReportMetric(podAdded/n, "s-pod-added")
	b.ReportMetric(polChanged/n, "s-policy-changed")
	b.ReportMetric(rss/n, "MiB-rss-growth")
	b.ReportMetric(rssMiB(b), "MiB-rss")
	b.ReportMetric(float64(st.Rules), "rules")
	b.ReportMetric(float64(st.SetElements), "set-elements")
}

// BenchmarkNetpolThroughput: pod-to-pod TCP throughput across berth0 with
// iperf3, on a node whose table has no policy and on a node with benchCluster's 1,000
// policies plus one that isolates the server and admits the client (the
// allowed flow), alternating run by run so that both see the same machine.
// hack/bench.sh prints the ratio.
func BenchmarkNetpolThroughput(b *testing.B) {
	if _, err := exec.LookPath("iperf3"); err != nil {
		b.Skip("iperf3 not installed (make bench installs it)")
	}
	pods := map[string]string{"cli": "10.77.0.2", "srv": "10.77.0.3"}
	bare, enforced := newBridgeNode(b, pods), newBridgeNode(b, pods)
	in := benchCluster()
	in.NodeIPs = []netip.Addr{netip.MustParseAddr("10.77.0.1")}
	in.PodCIDRs = []netip.Prefix{netip.MustParsePrefix("10.77.0.0/24")}
	in.Pods = append(in.Pods,
		// The server is isolated by 10 policies of the set (ns01, app
		// a01, ingress only) and srv-from-cli; the client by none.
		Pod{Namespace: "ns01", Name: "cli", Labels: map[string]string{"app": "bench", "role": "cli"}, IPs: []netip.Addr{netip.MustParseAddr("10.77.0.2")}, Node: "n1"},
		Pod{Namespace: "ns01", Name: "srv", Labels: map[string]string{"app": "a01", "role": "srv"}, IPs: []netip.Addr{netip.MustParseAddr("10.77.0.3")}, Node: "n1"})
	in.Policies = append(in.Policies, withIngress(policy("ns01", "srv-from-cli", sel("role=srv")), from(podPeer(sel("role=cli")))))
	// The baseline node has the table of the same pods with no policy (as
	// every node has: conntrack runs there for the service proxy anyway).
	none := in
	none.Policies = nil
	for _, n := range []struct {
		node *bridgeNode
		in   Input
	}{{bare, none}, {enforced, in}} {
		kernelSync(b, kernelNft(b, n.node.node), nil, Compile(n.in))
	}
	// The flow crosses the server's chain and is allowed by its last rule.
	serve(b, enforced.pods["srv"], 81)
	if !reaches(enforced.pods["cli"], "10.77.0.3:81") {
		b.Fatal("the client does not reach the server through the policies")
	}
	// Pairs of runs, in alternating order; the ratio is the median of the
	// pairs' ratios, which a busy neighbour during one pair does not move.
	var base, pols float64
	var ratios []float64
	for i := range b.N {
		var x, y float64
		if i%2 == 0 {
			x = netnstest.Iperf(b, bare.pods["srv"], bare.pods["cli"], "10.77.0.3", "10.77.0.3")
			y = netnstest.Iperf(b, enforced.pods["srv"], enforced.pods["cli"], "10.77.0.3", "10.77.0.3")
		} else {
			y = netnstest.Iperf(b, enforced.pods["srv"], enforced.pods["cli"], "10.77.0.3", "10.77.0.3")
			x = netnstest.Iperf(b, bare.pods["srv"], bare.pods["cli"], "10.77.0.3", "10.77.0.3")
		}
		base, pols = base+x, pols+y
		ratios = append(ratios, y/x)
	}
	slices.Sort(ratios)
	b.ReportMetric(base/float64(b.N)/1e9, "none-Gbit/s")
	b.ReportMetric(pols/float64(b.N)/1e9, "policies-Gbit/s")
	b.ReportMetric(ratios[len(ratios)/2], "policies/none")
}
