// Package l2bench measures layer-2 announcement in the lab: failover gaps
// seen by a client on the LAN, the time from a Service's creation to its
// first answer, and the agents' memory with 1,000 announced addresses.
package l2bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/berthnet/berth/lab"
	"github.com/berthnet/berth/test/l2probe"
	"github.com/berthnet/berth/test/labtest"
	"github.com/berthnet/berth/test/netnstest"
)

// BenchmarkL2 starts a three-node lab and reports:
//
//   - s-service-to-first-answer: from two LoadBalancer Services (sharing an
//     address) being created until the LAN client's first UDP answer
//     through the address: assignment, announcement (with its conflict
//     probe), ARP, service proxy;
//   - ms-<failure>-gap-median and -worst: the longest time without an
//     answer to a request sent every 10 ms, over $BERTH_L2BENCH_ROUNDS
//     rounds (default 10) of each failure of the announcing node: its
//     agent killed (SIGKILL, back 2 s later), its LAN link down (up again
//     once another node answers), its agent restarted gracefully;
//   - <failure>-two-answerers: ARP requests (one every 10 ms) that two
//     nodes answered, summed over the rounds (the goal is 0);
//   - MiB-rss-1000 and MiB-rss-baseline: the largest agent resident set
//     with 1,000 more addresses announced (one Service each), and before
//     they were created; s-1000-announced: until every one of them was.
//
// Figures, never verdicts: hack/bench.sh prints them against the goals.
// Run it with -benchtime 1x.
func BenchmarkL2(b *testing.B) {
	netnstest.RequireRoot(b)
	rounds := 10
	if v := os.Getenv("BERTH_L2BENCH_ROUNDS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			b.Fatalf("BERTH_L2BENCH_ROUNDS=%q: want a positive number", v)
		}
		rounds = n
	}
	l := labtest.New(b)
	l.Up(b)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Minute)
	defer cancel()
	for range b.N {
		s := l2probe.Setup(ctx, b, l, fmt.Sprintf("bench%d", time.Now().UnixNano()%1e6))
		b.ReportMetric(s.Reached.Sub(s.Created).Seconds(), "s-service-to-first-answer")
		for _, f := range []l2probe.Failure{l2probe.Kill, l2probe.LinkDown, l2probe.Restart} {
			var gaps []time.Duration
			both := 0
			for range rounds {
				r := s.Fail(ctx, b, f)
				b.Log(r)
				gaps = append(gaps, r.Requests.LongestGap)
				both += r.Answers.Both
			}
			slices.Sort(gaps)
			b.ReportMetric(ms(gaps[len(gaps)/2]), "ms-"+string(f)+"-gap-median")
			b.ReportMetric(ms(gaps[len(gaps)-1]), "ms-"+string(f)+"-gap-worst")
			b.ReportMetric(float64(both), string(f)+"-two-answerers")
		}
		base := l.MaxAgentRSS(b)
		start := time.Now()
		announce1000(ctx, b, l)
		b.ReportMetric(time.Since(start).Seconds(), "s-1000-announced")
		// Let the start-up garbage of the burst go before measuring.
		time.Sleep(3 * time.Second)
		b.ReportMetric(l.MaxAgentRSS(b), "MiB-rss-1000")
		b.ReportMetric(base, "MiB-rss-baseline")
	}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// announce1000 creates a pool of 1,024 addresses announced on eth0 and
// 1,000 selector-less LoadBalancer Services, and waits until a node
// announces each.
func announce1000(ctx context.Context, b *testing.B, l *labtest.Lab) {
	b.Helper()
	const ns, n = "bench-1k", 1000
	manifest := `apiVersion: berth.dev/v1alpha1
kind: IPPool
metadata: {name: bench-1k}
spec:
  addresses: ["100.64.0.0/22"]
  serviceAllocation: {namespaces: [bench-1k]}
---
apiVersion: berth.dev/v1alpha1
kind: L2Announcement
metadata: {name: bench-1k}
spec:
  ipPools: [bench-1k]
  interfaces: [eth0]
`
	f := filepath.Join(b.TempDir(), "pool.yaml")
	if err := os.WriteFile(f, []byte(manifest), 0o600); err != nil {
		b.Fatal(err)
	}
	if out, err := l.Kubectl(ctx, "apply", "-f", f); err != nil {
		b.Fatalf("%v\n%s", err, out)
	}
	c := l.FastClient(b)
	if _, err := c.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		b.Fatal(err)
	}
	labtest.CreateServices(ctx, b, c, ns, n, nil)
	deadline := time.Now().Add(10 * time.Minute)
	for {
		list, err := c.CoreV1().Services(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			b.Fatal(err)
		}
		done := 0
		for i := range list.Items {
			if meta.IsStatusConditionTrue(list.Items[i].Status.Conditions, lab.ConditionL2Announced) {
				done++
			}
		}
		if done == n {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("%d of %d Services announced after 10 minutes", done, n)
		}
		time.Sleep(500 * time.Millisecond)
	}
}
