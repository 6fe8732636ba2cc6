// Package bgpbench measures BGP announcement in the lab against its router
// (BIRD): how fast a Service's prefix reaches the router, how fast a
// stopping or dead node is withdrawn, and 1,000 advertised addresses.
package bgpbench

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/berthnet/berth/lab"
	"github.com/berthnet/berth/test/labtest"
	"github.com/berthnet/berth/test/netnstest"
)

// BenchmarkBGP starts a three-node lab peered with its router and reports:
//
//   - ms-service-to-route-median/-worst: from a LoadBalancer Service of the
//     lab-bgp pool created until the router's BIRD has its prefix (5 Services);
//   - ms-graceful-withdraw: from `restart-agent` sending SIGTERM to node1's
//     agent until BIRD no longer has node1 as a next hop;
//   - ms-kill-withdraw: the same for SIGKILL (the kernel closes the dead
//     agent's sessions, so the router hears at once);
//   - s-node-down-withdraw: node1's link taken down, which only the hold
//     time tells the router; s-negotiated-hold-time: that hold time, as
//     the router's BIRD reports the session's (the lab configures 9 s);
//   - ms-service-to-address-median: the part of the above until the
//     Service had its address (berth-controller's IPAM), for comparison;
//   - s-1000-in-rib: until 1,000 more addresses are all in BIRD's table,
//     and s-1000-assigned until the 1,000 Services all had addresses;
//     MiB-rss-1000 and MiB-rss-baseline: the largest agent's resident set
//     then and before.
//
// Figures, never verdicts: hack/bench.sh prints them against the goals.
// Run it with -benchtime 1x.
func BenchmarkBGP(b *testing.B) {
	netnstest.RequireRoot(b)
	l := labtest.New(b)
	l.Up(b)
	cfg := l.Config(b)
	c := l.FastClient(b)
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Minute)
	defer cancel()
	for range b.N {
		ns := fmt.Sprintf("bench%d", time.Now().UnixNano()%1e6)
		if _, err := c.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			b.Fatal(err)
		}
		var toRoute, toAddr []time.Duration
		for i := range 5 {
			start := time.Now()
			create(ctx, b, c, ns, fmt.Sprintf("s%d", i), lab.BGPPoolName)
			addr, err := lab.WaitAddress(ctx, c, ns, fmt.Sprintf("s%d", i), time.Minute)
			if err != nil {
				b.Fatal(err)
			}
			toAddr = append(toAddr, time.Since(start))
			waitRoute(ctx, b, cfg, addr, func(r string) bool { return r != "" })
			toRoute = append(toRoute, time.Since(start))
		}
		slices.Sort(toRoute)
		slices.Sort(toAddr)
		b.ReportMetric(ms(toRoute[len(toRoute)/2]), "ms-service-to-route-median")
		b.ReportMetric(ms(toRoute[len(toRoute)-1]), "ms-service-to-route-worst")
		b.ReportMetric(ms(toAddr[len(toAddr)/2]), "ms-service-to-address-median")
		addr, _ := lab.WaitAddress(ctx, c, ns, "s0", time.Minute)
		node1 := "via " + cfg.NodeAddr(1).String() + " "
		withdrawn := func(kill bool) time.Duration {
			args := []string{"lab", "restart-agent", "--name", l.Name, "--node", "1", "--down-for", "1s"}
			if kill {
				args = append(args, "--kill", "--down-for", "15s")
			}
			start := time.Now()
			done := make(chan error, 1)
			go func() {
				out, err := l.Berthctl(ctx, args...)
				if err != nil {
					err = fmt.Errorf("%v: %s", err, out)
				}
				done <- err
			}()
			waitRoute(ctx, b, cfg, addr, func(r string) bool { return !strings.Contains(r, node1) })
			d := time.Since(start)
			if err := <-done; err != nil {
				b.Fatal(err)
			}
			waitRoute(ctx, b, cfg, addr, func(r string) bool { return strings.Contains(r, node1) })
			return d
		}
		b.ReportMetric(ms(withdrawn(false)), "ms-graceful-withdraw")
		b.ReportMetric(ms(withdrawn(true)), "ms-kill-withdraw")
		// The node itself gone (its link down): only the hold time tells,
		// the one the router and node1 negotiated (read at the router).
		hold := negotiatedHold(ctx, b, cfg, cfg.NodeName(1))
		node := l.Namespace(b, cfg.NodeName(1))
		start := time.Now()
		if out, err := node.Command(ctx, "ip", "link", "set", "eth0", "down").CombinedOutput(); err != nil {
			b.Fatalf("%v: %s", err, out)
		}
		waitRoute(ctx, b, cfg, addr, func(r string) bool { return !strings.Contains(r, node1) })
		b.ReportMetric(time.Since(start).Seconds(), "s-node-down-withdraw")
		b.ReportMetric(hold.Seconds(), "s-negotiated-hold-time")
		if out, err := node.Command(ctx, "ip", "link", "set", "eth0", "up").CombinedOutput(); err != nil {
			b.Fatalf("%v: %s", err, out)
		}
		waitRoute(ctx, b, cfg, addr, func(r string) bool { return strings.Contains(r, node1) })

		base := l.MaxAgentRSS(b)
		start = time.Now()
		assigned := advertise1000(ctx, b, l, c)
		b.ReportMetric(time.Since(start).Seconds(), "s-1000-in-rib")
		b.ReportMetric(assigned.Sub(start).Seconds(), "s-1000-assigned")
		b.ReportMetric(l.MaxAgentRSS(b), "MiB-rss-1000")
		b.ReportMetric(base, "MiB-rss-baseline")
	}
}

// holdTimer is BIRD's "Hold timer: <left>/<negotiated>" line of an
// established BGP session.
var holdTimer = regexp.MustCompile(`Hold timer:\s+[0-9.]+/([0-9]+)`)

// negotiatedHold is the hold time of the router's session with protocol
// name (a node), as BIRD reports it.
func negotiatedHold(ctx context.Context, b *testing.B, cfg lab.Config, name string) time.Duration {
	b.Helper()
	out, err := cfg.Birdc(ctx, "show", "protocols", "all", name)
	if err != nil {
		b.Fatal(err)
	}
	m := holdTimer.FindStringSubmatch(out)
	if m == nil {
		b.Fatalf("no hold timer in BIRD's session %s:\n%s", name, out)
	}
	secs, err := strconv.Atoi(m[1])
	if err != nil {
		b.Fatal(err)
	}
	return time.Duration(secs) * time.Second
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func create(ctx context.Context, b *testing.B, c kubernetes.Interface, ns, name, pool string) {
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Annotations: map[string]string{"berth.dev/ip-pool": pool}},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, Ports: []corev1.ServicePort{{Name: "p", Port: 80}}}}
	if _, err := c.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		b.Fatal(err)
	}
}

// waitRoute polls BIRD's route for addr every 5 ms until ok says so.
func waitRoute(ctx context.Context, b *testing.B, cfg lab.Config, addr netip.Addr, ok func(string) bool) {
	b.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		r, err := cfg.RouterRoute(ctx, addr)
		if err == nil && ok(r) {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("route for %s: %q (%v)", addr, r, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

var routesRE = regexp.MustCompile(`(\d+) of \d+ routes for (\d+) networks`)

// advertise1000 creates a pool of 1,024 addresses, its announcement, and
// 1,000 Services asking for it, and waits until BIRD has every prefix.
func advertise1000(ctx context.Context, b *testing.B, l *labtest.Lab, c kubernetes.Interface) (assigned time.Time) {
	const ns, n = "bench-1k", 1000
	manifest := `apiVersion: berth.dev/v1alpha1
kind: IPPool
metadata: {name: bench-1k}
spec: {addresses: ["100.65.0.0/22"], autoAssign: false}
---
apiVersion: berth.dev/v1alpha1
kind: BGPAnnouncement
metadata: {name: bench-1k}
spec: {ipPools: [bench-1k]}
`
	f := filepath.Join(b.TempDir(), "pool.yaml")
	if err := os.WriteFile(f, []byte(manifest), 0o600); err != nil {
		b.Fatal(err)
	}
	if out, err := l.Kubectl(ctx, "apply", "-f", f); err != nil {
		b.Fatalf("%v\n%s", err, out)
	}
	if _, err := c.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		b.Fatal(err)
	}
	labtest.CreateServices(ctx, b, c, ns, n, map[string]string{"berth.dev/ip-pool": "bench-1k"})
	cfg := l.Config(b)
	deadline := time.Now().Add(10 * time.Minute)
	for assigned.IsZero() {
		list, err := c.CoreV1().Services(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			b.Fatal(err)
		}
		done := 0
		for i := range list.Items {
			if len(list.Items[i].Status.LoadBalancer.Ingress) > 0 {
				done++
			}
		}
		if done == n {
			assigned = time.Now()
		} else if time.Now().After(deadline) {
			b.Fatalf("%d of %d Services have an address after 10 minutes", done, n)
		} else {
			time.Sleep(100 * time.Millisecond)
		}
	}
	for {
		all, _ := cfg.Birdc(ctx, "show", "route", "where", "net ~ 100.65.0.0/22", "count")
		if m := routesRE.FindStringSubmatch(all); m != nil {
			if nets, _ := strconv.Atoi(m[2]); nets >= n {
				return assigned
			}
		}
		if time.Now().After(deadline) {
			b.Fatalf("BIRD after 10 minutes: %s", all)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
