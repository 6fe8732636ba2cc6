package podnet_test

import (
	"context"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/berthnet/berth/cni/podnet"
	"github.com/berthnet/berth/lab/netns"
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
	for _, mode := range []podnet.Mode{podnet.Routed, podnet.VXLAN} {
		b.Run(string(mode), func(b *testing.B) {
			c := newCluster(b)
			c.start(b, mode)
			runIperf(b, c.pods[1], c.pods[0], podIP(1))
		})
	}
}

// runIperf runs an iperf3 server in srv and a 3-second client in cli,
// b.N times, and reports the mean received throughput.
func runIperf(b *testing.B, srv, cli *netns.Namespace, ip string) {
	b.Helper()
	var total float64
	for range b.N {
		server := netns.EnterCommand(filepath.Join(netns.Dir, srv.Name), "iperf3", "-s", "-1", "-B", ip)
		if err := server.Start(); err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		var out []byte
		var err error
		// The client retries until the server listens.
		for try := 0; try < 100; try++ {
			out, err = exec.CommandContext(ctx, "nsenter", "--net="+cli.Path(), "--", "iperf3", "-c", ip, "-t", "3", "-J", "--connect-timeout", "1000").Output()
			if err == nil {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		cancel()
		if err != nil {
			// The server never got its one client: stop it, or it waits forever.
			_ = server.Process.Kill()
		}
		_ = server.Wait()
		if err != nil {
			b.Fatalf("iperf3 client: %v\n%s", err, out)
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
		total += res.End.SumReceived.BitsPerSecond
	}
	b.ReportMetric(total/float64(b.N)/1e9, "Gbit/s")
}
