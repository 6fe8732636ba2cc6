// Package netpolbench measures NetworkPolicy in a three-node lab, end to
// end: from the API to the node's table.
package netpolbench

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"

	"github.com/berthnet/berth/lab"
	"github.com/berthnet/berth/lab/netns"
	"github.com/berthnet/berth/netpol"
	"github.com/berthnet/berth/test/labtest"
	"github.com/berthnet/berth/test/netnstest"
)

// BenchmarkNetpolLab starts a three-node lab with 30 pods in 20
// namespaces and reports:
//
//   - s-1000-enforced: from the first of 1,000 policies created until
//     node1's agent has synced all of them; s-1000-created: until the API
//     server had them all (the baseline of the same run);
//   - MiB-rss-1000 and MiB-rss-baseline: the largest agent's resident set
//     with the policies and before;
//   - ms-pod-enforced-median and ms-pod-ready-median: from a pod created on
//     node1 (isolated by 10 of the policies) until node1's table sends its
//     address to its own chain, and until it is Ready (5 pods);
//   - ms-policy-enforced-median: from a policy's port updated until the
//     pod's chain on node1 has the new port (5 updates).
//
// Figures, never verdicts. Run it with -benchtime 1x.
func BenchmarkNetpolLab(b *testing.B) {
	netnstest.RequireRoot(b)
	l := labtest.New(b)
	l.Up(b)
	cfg := l.Config(b)
	c := l.FastClient(b)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	node1 := l.Namespace(b, "node1")
	for range b.N {
		for n := range 20 {
			ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("ns%02d", n), Labels: map[string]string{"team": fmt.Sprintf("t%d", n%5)}}}
			if _, err := c.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
				b.Fatal(err)
			}
		}
		for i := range 30 {
			p := pod(fmt.Sprintf("p%02d", i), fmt.Sprintf("ns%02d", i%20), fmt.Sprintf("a%02d", i%50), cfg.NodeName(1+i%3))
			if _, err := c.CoreV1().Pods(p.Namespace).Create(ctx, p, metav1.CreateOptions{}); err != nil {
				b.Fatal(err)
			}
		}
		waitReady(ctx, b, c, 30)
		rss0 := l.MaxAgentRSS(b)

		start := time.Now()
		createPolicies(ctx, b, c, 1000)
		created := time.Since(start)
		deadline := time.Now().Add(5 * time.Minute)
		for agentPolicies(ctx, node1) < 1000 {
			if time.Now().After(deadline) {
				b.Fatalf("node1's agent has %v policies after 5 minutes", agentPolicies(ctx, node1))
			}
		}
		enforced := time.Since(start)
		b.ReportMetric(created.Seconds(), "s-1000-created")
		b.ReportMetric(enforced.Seconds(), "s-1000-enforced")
		b.ReportMetric(rss0, "MiB-rss-baseline")
		b.ReportMetric(l.MaxAgentRSS(b), "MiB-rss-1000")

		var podEnforced, podReady, polEnforced []float64
		for r := range 5 {
			p := pod(fmt.Sprintf("new%d", r), "ns00", "a00", "node1")
			t0 := time.Now()
			got, err := c.CoreV1().Pods("ns00").Create(ctx, p, metav1.CreateOptions{})
			if err != nil {
				b.Fatal(err)
			}
			var ip string
			var enf, ready time.Duration
			for enf == 0 || ready == 0 {
				if time.Since(t0) > 2*time.Minute {
					b.Fatalf("pod %s: enforced after %v, Ready after %v", p.Name, enf, ready)
				}
				cur, err := c.CoreV1().Pods("ns00").Get(ctx, got.Name, metav1.GetOptions{})
				if err != nil {
					b.Fatal(err)
				}
				if ip == "" {
					ip = cur.Status.PodIP
				}
				if ready == 0 && isReady(cur) {
					ready = time.Since(t0)
				}
				if enf == 0 && ip != "" && strings.Contains(nft(node1, "list", "map", "inet", netpol.Table, "ingress-pods4"), ip+" : goto ") {
					enf = time.Since(t0)
				}
			}
			podEnforced = append(podEnforced, enf.Seconds()*1000)
			podReady = append(podReady, ready.Seconds()*1000)
		}
		for r := range 5 {
			pol, err := c.NetworkingV1().NetworkPolicies("ns00").Get(ctx, "pol0000", metav1.GetOptions{})
			if err != nil {
				b.Fatal(err)
			}
			port := int32(7000 + r)
			pol.Spec.Ingress[0].Ports = []networkingv1.NetworkPolicyPort{{Port: new(intstr.FromInt32(port))}}
			t0 := time.Now()
			if _, err := c.NetworkingV1().NetworkPolicies("ns00").Update(ctx, pol, metav1.UpdateOptions{}); err != nil {
				b.Fatal(err)
			}
			want := fmt.Sprintf("dport %d", port)
			for !strings.Contains(nft(node1, "list", "chain", "inet", netpol.Table, "in-ns00/new0"), want) {
				if time.Since(t0) > time.Minute {
					b.Fatalf("policy change not in node1's table after a minute")
				}
			}
			polEnforced = append(polEnforced, time.Since(t0).Seconds()*1000)
		}
		b.ReportMetric(median(podEnforced), "ms-pod-enforced-median")
		b.ReportMetric(median(podReady), "ms-pod-ready-median")
		b.ReportMetric(median(polEnforced), "ms-policy-enforced-median")
	}
}

func pod(name, ns, app, node string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{"app": app, "bench": "netpol"}},
		Spec:       corev1.PodSpec{NodeName: node, Containers: []corev1.Container{lab.EchoContainer("echo", lab.EchoImage, 8080, corev1.ProtocolTCP)}},
	}
}

// createPolicies creates policies pol0000... over the namespaces, sixteen
// at a time: policy k selects app a<k%50> in ns<k%20> and admits app
// a<(k+1)%50> on TCP 8000+k%100.
func createPolicies(ctx context.Context, b *testing.B, c kubernetes.Interface, n int) {
	var wg sync.WaitGroup
	errs := make(chan error, n)
	sem := make(chan struct{}, 16)
	for k := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			p := &networkingv1.NetworkPolicy{
				ObjectMeta: metav1.ObjectMeta{Namespace: fmt.Sprintf("ns%02d", k%20), Name: fmt.Sprintf("pol%04d", k)},
				Spec: networkingv1.NetworkPolicySpec{
					PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": fmt.Sprintf("a%02d", k%50)}},
					Ingress: []networkingv1.NetworkPolicyIngressRule{{
						From:  []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": fmt.Sprintf("a%02d", (k+1)%50)}}}},
						Ports: []networkingv1.NetworkPolicyPort{{Port: new(intstr.FromInt32(int32(8000 + k%100)))}},
					}},
				},
			}
			if _, err := c.NetworkingV1().NetworkPolicies(p.Namespace).Create(ctx, p, metav1.CreateOptions{}); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
}

func waitReady(ctx context.Context, b *testing.B, c kubernetes.Interface, n int) {
	deadline := time.Now().Add(3 * time.Minute)
	for {
		list, err := c.CoreV1().Pods("").List(ctx, metav1.ListOptions{LabelSelector: "bench=netpol"})
		if err != nil {
			b.Fatal(err)
		}
		ready := 0
		for i := range list.Items {
			if isReady(&list.Items[i]) {
				ready++
			}
		}
		if ready >= n {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("%d of %d pods Ready after 3 minutes", ready, n)
		}
	}
}

func isReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// agentPolicies reads berth_agent_netpol_policies from the agent in ns.
func agentPolicies(ctx context.Context, ns *netns.Namespace) float64 {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://127.0.0.1:9190/metrics", nil)
	resp, err := lab.HTTPClient(ns).Do(req)
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, "berth_agent_netpol_policies "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	return -1
}

func nft(ns *netns.Namespace, args ...string) string {
	var out []byte
	_ = ns.Do(func() (err error) {
		out, err = exec.Command("nft", args...).CombinedOutput()
		return err
	})
	return string(out)
}

func median(xs []float64) float64 {
	slices.Sort(xs)
	return xs[len(xs)/2]
}
