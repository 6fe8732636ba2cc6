package podnet_test

import (
	"context"
	"net/netip"
	"os/exec"
	"testing"

	"github.com/berthnet/berth/cni/podnet"
	"github.com/berthnet/berth/lab/netns"
	"github.com/berthnet/berth/proxy"
	"github.com/berthnet/berth/test/netnstest"
)

// BenchmarkPodThroughput measures pod-to-pod TCP throughput across two nodes
// with iperf3 (Debian's), in routed and VXLAN mode, and a bare veth pair
// between two namespaces as the baseline of the same run. Figures are
// Gbit/s; hack/bench.sh prints the ratios against the baseline.
func BenchmarkPodThroughput(b *testing.B) {
	if _, err := exec.LookPath("iperf3"); err != nil {
		b.Skip("iperf3 not installed (make bench installs it)")
	}
	b.Run("bare-veth", func(b *testing.B) {
		a, z := netnstest.New(b), netnstest.New(b)
		if err := netns.Veth(a, "eth0", z, "eth0"); err != nil {
			b.Fatal(err)
		}
		if err := a.AddAddress("eth0", "10.99.0.1/24"); err != nil {
			b.Fatal(err)
		}
		if err := z.AddAddress("eth0", "10.99.0.2/24"); err != nil {
			b.Fatal(err)
		}
		runIperf(b, z, a, "10.99.0.2")
	})
	// Through a ClusterIP: the service proxy's DNAT on the client's node
	// against the direct path in the same cluster, runs interleaved so
	// both see the same machine.
	b.Run("routed-clusterip", func(b *testing.B) {
		c := newCluster(b)
		c.start(b, podnet.Routed)
		svc := proxy.ServicePort{Key: proxy.PortKey{Namespace: "bench", Name: "iperf", Port: "iperf", Protocol: "tcp"},
			ClusterIPs: []netip.Addr{netip.MustParseAddr("10.96.0.100")}, Port: 5201}
		st := proxy.State{Services: []proxy.ServicePort{svc},
			Endpoints:    map[proxy.PortKey][]proxy.Endpoint{svc.Key: {{Addr: netip.MustParseAddr(podIP(1)), Port: 5201, Ready: true, Serving: true}}},
			ClusterCIDRs: []netip.Prefix{netip.MustParsePrefix("10.244.0.0/16")}}
		if err := c.nodes[0].Do(func() error {
			be, err := proxy.NewNetlink()
			if err != nil {
				return err
			}
			defer be.Close()
			return proxy.NewSyncer(be, nil).Sync(context.Background(), st)
		}); err != nil {
			b.Fatal(err)
		}
		var direct, service float64
		for range b.N {
			direct += netnstest.Iperf(b, c.pods[1], c.pods[0], podIP(1), podIP(1))
			service += netnstest.Iperf(b, c.pods[1], c.pods[0], podIP(1), "10.96.0.100")
		}
		b.ReportMetric(direct/float64(b.N)/1e9, "direct-Gbit/s")
		b.ReportMetric(service/float64(b.N)/1e9, "clusterip-Gbit/s")
		b.ReportMetric(service/direct, "clusterip/direct")
	})
	for _, mode := range []podnet.Mode{podnet.Routed, podnet.VXLAN} {
		b.Run(string(mode), func(b *testing.B) {
			c := newCluster(b)
			c.start(b, mode)
			runIperf(b, c.pods[1], c.pods[0], podIP(1))
		})
	}
}

// runIperf runs iperf3 b.N times between srv and cli and reports the mean
// received throughput.
func runIperf(b *testing.B, srv, cli *netns.Namespace, ip string) {
	b.Helper()
	var total float64
	for range b.N {
		total += netnstest.Iperf(b, srv, cli, ip, ip)
	}
	b.ReportMetric(total/float64(b.N)/1e9, "Gbit/s")
}
