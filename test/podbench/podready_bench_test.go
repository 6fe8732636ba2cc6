// Package podbench measures pod startup on the lab's real nodes (containerd,
// runc and the kubelet of bin/node, lab/realnode): pod create -> Ready
// through berth-cni against the upstream bridge + host-local plugins, and
// `berthctl lab up` of real nodes, cold and warm.
package podbench

import (
	"context"
	"fmt"
	"math"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/berthnet/berth/lab/realnode/nodetest"
	"github.com/berthnet/berth/test/netnstest"
)

func TestMain(m *testing.M) { netnstest.Main(m) }

// BenchmarkPodReady runs two real nodes against one API server, the same
// binaries and settings, one with Berth's CNI as berth-agent installs it
// and one with the upstream bridge + host-local v1.10.0 over the same
// podCIDR ($BERTH_UPSTREAM_CNI_DIR, which hack/bench.sh builds and sets),
// and times pods of the pause image from the Create call to the Ready
// condition as a watch of the API server delivers it (local clocks: the
// condition's own timestamps have one-second resolution).
//
// Each round ($BERTH_PODBENCH_ROUNDS, default 3) runs, per node, in an
// order that alternates between rounds, $BERTH_PODBENCH_PODS pods (default
// 5) one at a time ("one": the next is created once the last is Ready),
// then as many created at once ("burst"); every pod's address must be in
// its node's plugin's store (the configuration measured is the one meant),
// and all are deleted, and their CNI DEL done, before the next node's turn.
//
// Two nodes rather than one whose conflist is swapped between rounds:
// containerd's CRI reloads /etc/cni/net.d asynchronously, so a pod created
// just after a swap could go through the old configuration; and nothing of
// one configuration (host-local's files, its bridge) lingers into the
// other's turn. Both kubelets run throughout, so their idle work loads
// both configurations alike; interleaving cancels the machine's drift.
//
// Metrics: berth-<mode>-p50-ms, -p90-ms, the same for upstream, and
// <mode>-p50-berth/upstream and <mode>-p90-berth/upstream, for mode one and
// burst (goal: p50 ratio <= 1.2).
func BenchmarkPodReady(b *testing.B) {
	rounds := envInt(b, "BERTH_PODBENCH_ROUNDS", 3)
	perPhase := envInt(b, "BERTH_PODBENCH_PODS", 5)
	in := prepare(b)
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Minute)
	defer cancel()
	nodes := []*node{startNode(ctx, b, in, berthCNI), startNode(ctx, b, in, upstreamCNI)}
	nsName := "podbench-" + nodes[0].ns.Name
	_, err := in.admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: nsName}}, metav1.CreateOptions{})
	nodetest.Must(b, err)
	// No controller-manager: the namespace's ServiceAccount is made by hand.
	_, err = in.admin.CoreV1().ServiceAccounts(nsName).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{})
	nodetest.Must(b, err)

	// One pod per node first, unmeasured: the first sandbox of a node also
	// unpacks the pause image's snapshot.
	for _, n := range nodes {
		p := &phase{in: in, n: n, ns: nsName, id: "warmup-" + string(n.kind), pods: 1}
		p.run(ctx, b, false)
	}
	samples := map[string][]time.Duration{}
	for r := range rounds {
		order := nodes
		if r%2 == 1 {
			order = []*node{nodes[1], nodes[0]}
		}
		for _, mode := range []string{"one", "burst"} {
			for _, n := range order {
				p := &phase{in: in, n: n, ns: nsName, id: fmt.Sprintf("r%d-%s-%s", r, mode, n.kind), pods: perPhase}
				d := p.run(ctx, b, mode == "burst")
				key := string(n.kind) + "-" + mode
				samples[key] = append(samples[key], d...)
				b.Logf("round %d %-5s %-8s %v", r, mode, n.kind, d)
			}
		}
	}
	b.ReportMetric(0, "ns/op")
	for _, mode := range []string{"one", "burst"} {
		for _, q := range []float64{50, 90} {
			bq := quantile(samples["berth-"+mode], q)
			uq := quantile(samples["upstream-"+mode], q)
			b.ReportMetric(ms(bq), fmt.Sprintf("berth-%s-p%.0f-ms", mode, q))
			b.ReportMetric(ms(uq), fmt.Sprintf("upstream-%s-p%.0f-ms", mode, q))
			b.ReportMetric(float64(bq)/float64(uq), fmt.Sprintf("%s-p%.0f-berth/upstream", mode, q))
		}
		b.ReportMetric(float64(len(samples["berth-"+mode])), "pods-"+mode+"-each")
	}
}

// phase creates pods on one node, one at a time or all at once, times each
// from its Create call to the watch event that shows it Ready, checks that
// its address came from the node's plugin, then deletes them all and waits
// for CNI DEL.
type phase struct {
	in   *inputs
	n    *node
	ns   string
	id   string
	pods int
}

func (p *phase) run(ctx context.Context, b *testing.B, burst bool) []time.Duration {
	b.Helper()
	pods := p.in.admin.CoreV1().Pods(p.ns)
	sel := "podbench=" + p.id
	ready := make(chan readyAt, p.pods)
	wctx, stop := context.WithCancel(ctx)
	rewatch := func(rv string) (watch.Interface, error) {
		return pods.Watch(wctx, metav1.ListOptions{LabelSelector: sel, ResourceVersion: rv})
	}
	// The watch is open before the first Create.
	w, err := rewatch("")
	if err != nil {
		stop()
		b.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		watchReady(wctx, w, ready, rewatch)
	}()
	defer func() { stop(); <-done }()

	created := make([]time.Time, p.pods)
	names := make([]string, p.pods)
	create := func(i int) error {
		names[i] = fmt.Sprintf("%s-%d", p.id, i)
		created[i] = time.Now()
		_, err := pods.Create(ctx, p.pod(names[i]), metav1.CreateOptions{})
		return err
	}
	took := map[string]time.Duration{}
	// A pod that is not Ready in 3 minutes fails the run, not the 40.
	deadline := time.After(3 * time.Minute)
	wait := func(want int) {
		for len(took) < want {
			select {
			case r := <-ready:
				i := slices.Index(names, r.name)
				if i < 0 {
					b.Fatalf("Ready event for an unknown pod %s", r.name)
				}
				took[r.name] = r.at.Sub(created[i])
			case <-deadline:
				b.Fatalf("phase %s: %d of %d pods Ready after 3 minutes", p.id, len(took), want)
			case <-ctx.Done():
				b.Fatalf("phase %s: %d of %d pods Ready: %v", p.id, len(took), want, ctx.Err())
			}
		}
	}
	if burst {
		var wg sync.WaitGroup
		errs := make([]error, p.pods)
		for i := range p.pods {
			wg.Go(func() { errs[i] = create(i) })
		}
		wg.Wait()
		for _, err := range errs {
			nodetest.Must(b, err)
		}
		wait(p.pods)
	} else {
		for i := range p.pods {
			nodetest.Must(b, create(i))
			wait(i + 1)
		}
	}
	out := make([]time.Duration, 0, p.pods)
	for _, n := range names {
		out = append(out, took[n])
	}
	p.check(ctx, b, names)
	p.clean(ctx, b, names)
	return out
}

func (p *phase) pod(name string) *corev1.Pod {
	no := false
	zero := int64(0)
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: p.ns, Labels: map[string]string{"podbench": p.id}},
		Spec: corev1.PodSpec{
			NodeName:                      p.n.name,
			AutomountServiceAccountToken:  &no,
			EnableServiceLinks:            &no,
			TerminationGracePeriodSeconds: &zero,
			Containers:                    []corev1.Container{{Name: "pause", Image: pauseImage, ImagePullPolicy: corev1.PullNever}},
		},
	}
}

// check: every pod has an address of the podCIDR that the node's plugin's
// store holds.
func (p *phase) check(ctx context.Context, b *testing.B, names []string) {
	b.Helper()
	for _, name := range names {
		pod, err := p.in.admin.CoreV1().Pods(p.ns).Get(ctx, name, metav1.GetOptions{})
		nodetest.Must(b, err)
		ip := pod.Status.PodIP
		if ip == "" {
			b.Fatalf("pod %s on %s is Ready with no address", name, p.n.name)
		}
		if _, err := os.Stat(p.n.reserved(ip)); err != nil {
			b.Fatalf("pod %s on %s has %s, which its plugin (%s) did not hand out: %v", name, p.n.name, ip, p.n.kind, err)
		}
	}
}

// clean deletes the pods and waits until they are gone from the API server
// and CNI DEL has taken their veths and addresses.
func (p *phase) clean(ctx context.Context, b *testing.B, names []string) {
	b.Helper()
	pods := p.in.admin.CoreV1().Pods(p.ns)
	zero := int64(0)
	for _, name := range names {
		if err := pods.Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil && !apierrors.IsNotFound(err) {
			b.Fatal(err)
		}
	}
	nodetest.WaitFor(ctx, b, "phase "+p.id+": pods deleted and CNI DEL done", func() error {
		l, err := pods.List(ctx, metav1.ListOptions{LabelSelector: "podbench=" + p.id})
		if err != nil {
			return err
		}
		if len(l.Items) > 0 {
			return fmt.Errorf("%d pods left", len(l.Items))
		}
		ports, err := p.n.bridgePorts()
		if err != nil {
			return err
		}
		if ports > 0 {
			return fmt.Errorf("%d veths left on the bridge", ports)
		}
		return nil
	})
}

type readyAt struct {
	name string
	at   time.Time
}

// watchReady sends each pod's name once, with the local time of the first
// event that shows its Ready condition True. A watch the API server closes
// is resumed from the last resource version seen.
func watchReady(ctx context.Context, w watch.Interface, out chan<- readyAt, rewatch func(rv string) (watch.Interface, error)) {
	seen := map[string]bool{}
	rv := ""
	for {
		go func() { <-ctx.Done(); w.Stop() }()
		for ev := range w.ResultChan() {
			at := time.Now()
			pod, ok := ev.Object.(*corev1.Pod)
			if !ok {
				continue
			}
			rv = pod.ResourceVersion
			if seen[pod.Name] || !podReady(pod) {
				continue
			}
			seen[pod.Name] = true
			select {
			case out <- readyAt{pod.Name, at}:
			case <-ctx.Done():
			}
		}
		w.Stop()
		if ctx.Err() != nil {
			return
		}
		var err error
		for w, err = rewatch(rv); err != nil; w, err = rewatch(rv) {
			select {
			case <-ctx.Done():
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// quantile is the nearest-rank q-th percentile.
func quantile(d []time.Duration, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	i := int(math.Ceil(q/100*float64(len(s)))) - 1
	return s[max(i, 0)]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func envInt(b *testing.B, key string, def int) int {
	b.Helper()
	v := os.Getenv(key)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		b.Fatalf("%s=%q: want a positive number", key, v)
	}
	return n
}
