package podnet_test

import (
	"context"
	"net/netip"
	"os/exec"
	"slices"
	"testing"

	"github.com/berthnet/berth/cni/podnet"
	"github.com/berthnet/berth/lab/netns"
	"github.com/berthnet/berth/proxy"
	"github.com/berthnet/berth/test/netnstest"
)

// throughputPath is one path iperf3 measures: a server in srv bound to ip,
// a client in cli.
type throughputPath struct {
	name     string
	srv, cli *netns.Namespace
	ip       string
}

// BenchmarkPodThroughput measures TCP throughput with iperf3 (Debian's).
// "paths": pod to pod across two nodes in routed and in VXLAN mode, against
// a bare veth pair between two namespaces (the baseline) and node
// to node over the lab's simulated LAN (a veth into a bridge and out of
// another veth: the part of the pod path that is not Berth's), and the
// same pod-to-pod paths built by hand with no Berth code (floorPath: what
// the kernel gives each design). The paths are set up once and measured in
// turn, each round in a rotated order, so that they see the same machine;
// single runs vary by 20%. It reports each path's mean and the median of
// each round's ratios; hack/bench.sh prints them against the goals.
func BenchmarkPodThroughput(b *testing.B) {
	if _, err := exec.LookPath("iperf3"); err != nil {
		b.Skip("iperf3 not installed (make bench installs it)")
	}
	b.Run("paths", func(b *testing.B) {
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
		routed, vx := newCluster(b), newCluster(b)
		routed.start(b, podnet.Routed)
		vx.start(b, podnet.VXLAN)
		paths := []throughputPath{
			{"bare", z, a, "10.99.0.2"},
			{"wire", routed.nodes[1], routed.nodes[0], routed.info[1].InternalIP.String()},
			{"routed", routed.pods[1], routed.pods[0], podIP(1)},
			{"vxlan", vx.pods[1], vx.pods[0], podIP(1)},
		}
		for _, shape := range []string{"bridged", "vxlan", "p2p"} {
			srv, cli, ip := floorPath(b, shape)
			paths = append(paths, throughputPath{"floor-" + shape, srv, cli, ip})
		}
		// Each ratio is taken within a round, so both sides saw the
		// same machine.
		pairs := [][2]string{{"routed", "bare"}, {"routed", "wire"}, {"vxlan", "bare"}, {"vxlan", "wire"},
			{"floor-bridged", "bare"}, {"floor-vxlan", "bare"}, {"floor-p2p", "bare"},
			{"routed", "floor-bridged"}, {"vxlan", "floor-vxlan"}}
		sum := map[string]float64{}
		ratios := map[string][]float64{}
		for round := range b.N {
			got := map[string]float64{}
			for i := range paths {
				p := paths[(round+i)%len(paths)]
				got[p.name] = netnstest.Iperf(b, p.srv, p.cli, p.ip, p.ip)
				sum[p.name] += got[p.name]
			}
			for _, pr := range pairs {
				name := pr[0] + "/" + pr[1]
				ratios[name] = append(ratios[name], got[pr[0]]/got[pr[1]])
			}
		}
		for _, p := range paths {
			b.ReportMetric(sum[p.name]/float64(b.N)/1e9, p.name+"-Gbit/s")
		}
		for name, r := range ratios {
			slices.Sort(r)
			b.ReportMetric(r[len(r)/2], name)
		}
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
}
