package podnet_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

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
			direct += iperf(b, c.pods[1], c.pods[0], podIP(1), podIP(1))
			service += iperf(b, c.pods[1], c.pods[0], podIP(1), "10.96.0.100")
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
		total += iperf(b, srv, cli, ip, ip)
	}
	b.ReportMetric(total/float64(b.N)/1e9, "Gbit/s")
}

// iperf runs an iperf3 server on bind in srv and a 3-second client to
// target in cli, and returns the received throughput in bit/s.
func iperf(b *testing.B, srv, cli *netns.Namespace, bind, target string) float64 {
	b.Helper()
	server := netns.EnterCommand(filepath.Join(netns.Dir, srv.Name), "iperf3", "-s", "-1", "-B", bind)
	if err := server.Start(); err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	var out []byte
	var err error
	// The client retries until the server listens. With -J, iperf3 may
	// exit 0 having only printed {"error": "unable to connect ..."}: that
	// is a failure to retry too, not a run of 0 bit/s.
	for try := 0; try < 100; try++ {
		out, err = exec.CommandContext(ctx, "nsenter", "--net="+cli.Path(), "--", "iperf3", "-c", target, "-t", "3", "-J", "--connect-timeout", "1000").Output()
		if err == nil {
			err = iperfError(out)
		}
		if err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	// The server ends after its one client; if that client never got
	// through, or left a session half open, the server would wait forever:
	// it gets a few seconds, then it is stopped.
	done := make(chan error, 1)
	go func() { done <- server.Wait() }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = server.Process.Kill()
		<-done
	}
	if err != nil {
		b.Fatalf("iperf3 client to %s: %v\n%s", target, err, out)
	}
	var res struct {
		End struct {
			SumReceived struct {
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
	}
	if err := json.Unmarshal(out, &res); err != nil {
		b.Fatalf("iperf3 output: %v", err)
	}
	return res.End.SumReceived.BitsPerSecond
}

// iperfError is the error iperf3 reported in its JSON output, if any.
func iperfError(out []byte) error {
	var res struct {
		Error string `json:"error"`
	}
	if err := json.Unmarshal(out, &res); err != nil {
		return fmt.Errorf("iperf3 output: %w", err)
	}
	if res.Error != "" {
		return errors.New(res.Error)
	}
	return nil
}
