package proxybench

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/berthnet/berth/test/netnstest"
	"github.com/berthnet/berth/test/proctest"
)

// result is what one proxy measured at one size.
type result struct {
	firstCommit, fullSync, serviceChange, endpointChange time.Duration
	rss, rssAtSync, hwm                                  float64 // MiB
}

// BenchmarkProxy runs Berth's service proxy (berth-agent) and upstream
// kube-proxy in nftables mode side by side against one API server holding
// N selector-less ClusterIP Services with one EndpointSlice of ten ready
// endpoints each ($BERTH_PROXYBENCH_SIZES, default 1k, 5k and 10k). Each
// proxy runs in a fresh network namespace of its own and is measured for:
//
//   - s-full-sync: from the process start until the kernel holds all N
//     Services (see nft_test.go for how that is told); s-first-commit:
//     until its first transaction, whatever it held (for Berth, whose cold
//     start commits in batches, about when it began to write);
//   - MiB-rss-at-sync: its resident set right then; MiB-rss: once it has
//     committed nothing for two seconds (its steady cost); MiB-hwm: its
//     peak, at the end;
//   - s-one-service-change: one Service's port changed, from the API
//     write being sent until the kernel has the new map element;
//   - s-one-endpoint-change: one endpoint's address replaced in one
//     EndpointSlice, from the write being sent until the kernel's rules
//     hold the new address.
//
// The change figures start when the write is sent, not when it returns: a
// fast proxy can have its rules in the kernel before the client has read
// the API server's answer. They include the API server's own commit, a few
// milliseconds, alike for both.
//
// kube-proxy runs first at each size; Berth's line then carries its
// figures divided by kube-proxy's from the same run (ratio-*), and both
// carry s-per-1k-services to show how the full sync grows. Figures, never
// verdicts: hack/bench.sh prints them against the goals. Run it with
// -benchtime 1x: one run is the measurement.
func BenchmarkProxy(b *testing.B) {
	netnstest.RequireRoot(b)
	counts := sizes(b)
	agent := agentBinary(b)
	kp := kubeProxyBinary(b)
	c := startCluster(b)
	for _, n := range counts {
		c.grow(b, n)
		var base *result
		for _, k := range []proxyKind{kubeProxy(kp, c.kubeconfig), berthProxy(agent, c.kubeconfig)} {
			b.Run(k.name+"-"+sizeName(n), func(b *testing.B) {
				if b.N > 1 {
					b.Skip("one run is the measurement; use -benchtime 1x")
				}
				if k.bin == "" {
					b.Skip("bin/k8s/kube-proxy is not built: run test/k8sbin/build-kube-proxy.sh (make bench does)")
				}
				r := measure(b, c, k, n)
				b.ReportMetric(r.firstCommit.Seconds(), "s-first-commit")
				b.ReportMetric(r.fullSync.Seconds(), "s-full-sync")
				b.ReportMetric(r.fullSync.Seconds()/(float64(n)/1000), "s-per-1k-services")
				b.ReportMetric(r.rss, "MiB-rss")
				b.ReportMetric(r.rssAtSync, "MiB-rss-at-sync")
				b.ReportMetric(r.hwm, "MiB-hwm")
				b.ReportMetric(r.serviceChange.Seconds(), "s-one-service-change")
				b.ReportMetric(r.endpointChange.Seconds(), "s-one-endpoint-change")
				if k.name == "kube-proxy" {
					base = &r
				} else if base != nil {
					b.ReportMetric(r.fullSync.Seconds()/base.fullSync.Seconds(), "ratio-full-sync")
					b.ReportMetric(r.rss/base.rss, "ratio-rss")
					b.ReportMetric(r.serviceChange.Seconds()/base.serviceChange.Seconds(), "ratio-service-change")
					b.ReportMetric(r.endpointChange.Seconds()/base.endpointChange.Seconds(), "ratio-endpoint-change")
				}
			})
		}
	}
}

// changedPort is the port a changed Service moves to; no other Service
// uses it.
const changedPort = 18080

func measure(b *testing.B, c *cluster, k proxyKind, n int) result {
	var r result
	ns := netnstest.New(b)
	nf := openNF(b, ns)
	netnstest.Forward(b, ns, c.apiAddr)
	gen0, err := nf.generation()
	if err != nil {
		b.Fatal(err)
	}
	p, start := startProxy(b, ns, k)
	r.firstCommit, r.fullSync = waitFullSync(b, nf, p, k, c, n, start, gen0)
	r.rssAtSync = p.MemMiB(b, "VmRSS")
	w := watchNF(b, ns)
	settle(b, nf, p)
	// The resident set once the proxy is quiet: what it costs a node to
	// keep it (both proxies are read the same way).
	r.rss = p.MemMiB(b, "VmRSS")
	b.Logf("%s: %d Services in the kernel after %s, RSS %.0f MiB then, %.0f MiB settled", k.name, n, r.fullSync.Round(time.Millisecond), r.rssAtSync, r.rss)
	profiling := k.name == "berth" && pprofDir() != ""
	var cpuDone chan struct{}
	if profiling {
		fetchProfile(b, ns, "heap", fmt.Sprintf("heap-%d.pb.gz", n))
		cpuDone = make(chan struct{})
		go func() {
			defer close(cpuDone)
			fetchProfile(b, ns, "profile?seconds=4", fmt.Sprintf("cpu-changes-%d.pb.gz", n))
		}()
	}

	// One Service changes its port; the revert runs before the proxy
	// stops, so the next proxy sees the same objects.
	svc := n / 2
	b.Cleanup(func() {
		if _, err := c.changeServicePort(svc, svcPort); err != nil {
			b.Errorf("restore Service %d: %v", svc, err)
		}
	})
	mark := w.mark()
	t0, err := c.changeServicePort(svc, changedPort)
	if err != nil {
		b.Fatal(err)
	}
	at, err := w.wait(mark, 2*time.Minute, newElement("service-ips", serviceKey(c.clusterIPs[svc], unix.IPPROTO_TCP, changedPort)))
	if err != nil {
		p.Alive(b)
		b.Fatalf("%s: Service %d port change: %v", k.name, svc, err)
	}
	r.serviceChange = at.Sub(t0)
	settle(b, nf, p)

	// One endpoint of another Service is replaced.
	epSvc := n / 4
	c.lastAddr++
	addr := netip.AddrFrom4([4]byte{10, 200, byte(c.lastAddr >> 8), byte(c.lastAddr)})
	b.Cleanup(func() {
		if _, err := c.changeEndpoint(epSvc, endpointAddr(epSvc, 0)); err != nil {
			b.Errorf("restore EndpointSlice %d: %v", epSvc, err)
		}
	})
	mark = w.mark()
	t0, err = c.changeEndpoint(epSvc, addr)
	if err != nil {
		b.Fatal(err)
	}
	at, err = w.wait(mark, 2*time.Minute, newEndpoint(addr))
	if err != nil {
		p.Alive(b)
		b.Fatalf("%s: endpoint change in Service %d: %v", k.name, epSvc, err)
	}
	r.endpointChange = at.Sub(t0)
	if cpuDone != nil {
		<-cpuDone
	}
	r.hwm = p.MemMiB(b, "VmHWM")
	b.Logf("%s: one Service change %s, one endpoint change %s, peak RSS %.0f MiB", k.name,
		r.serviceChange.Round(time.Millisecond), r.endpointChange.Round(time.Millisecond), r.hwm)
	return r
}

// waitFullSync polls the generation every few milliseconds and, each time
// it moves, counts the benchmark's Services in the proxy's service-ips
// map. The sync is complete at the first generation with all n of them.
// It returns that, and when the generation first moved from gen0.
func waitFullSync(b *testing.B, nf *nfConn, p *proctest.Proc, k proxyKind, c *cluster, n int, start time.Time, gen0 uint32) (first, full time.Duration) {
	b.Helper()
	// Generous: kube-proxy needs about 46 s for 10k Services on 2 cores.
	deadline := start.Add(2*time.Minute + time.Duration(n)*20*time.Millisecond)
	var last uint32
	counted, have := false, 0
	for {
		p.Alive(b)
		g1, err := nf.generation()
		seen := time.Now()
		if err != nil {
			b.Fatalf("generation: %v", err)
		}
		if first == 0 && g1 != gen0 {
			first = seen.Sub(start)
		}
		if !counted || g1 != last {
			have, err = nf.countKeys(k.family, k.table, "service-ips", c.ips)
			if err != nil {
				b.Fatalf("count %s service-ips: %v", k.name, err)
			}
			g2, err := nf.generation()
			if err != nil {
				b.Fatalf("generation: %v", err)
			}
			if have >= n {
				if g2 == g1 {
					return first, seen.Sub(start)
				}
				// A commit landed while counting: credit the later time.
				return first, time.Since(start)
			}
			// When g2 moved, the next round counts again.
			last, counted = g1, true
		}
		if time.Now().After(deadline) {
			b.Fatalf("%s: %d of %d Services in the kernel after %s", k.name, have, n, time.Since(start).Round(time.Second))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// settle waits until the proxy has committed nothing for two seconds (at
// most a minute), so a change is not measured behind a sync already
// under way.
func settle(b *testing.B, nf *nfConn, p *proctest.Proc) {
	b.Helper()
	g, err := nf.generation()
	if err != nil {
		b.Fatal(err)
	}
	quiet, deadline := time.Now(), time.Now().Add(time.Minute)
	for time.Since(quiet) < 2*time.Second && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
		p.Alive(b)
		now, err := nf.generation()
		if err != nil {
			b.Fatal(err)
		}
		if now != g {
			g, quiet = now, time.Now()
		}
	}
}
