package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/berthnet/berth/lab"
	"github.com/berthnet/berth/lab/netns"
	"github.com/berthnet/berth/test/labtest"
)

// TestRealNodeRangeExhausted: on a real node whose IPv4 podCIDR is a /28
// (14 addresses: the bridge's and 13 for pods), a Deployment of 16 pods
// pinned to it gets at most 13 addresses. Each pod beyond that stays
// without one, and its events carry berth-cni's error as the kubelet reports
// it (FailedCreatePodSandBox: "no free address"). Nothing else breaks:
// the pods that have an address serve, and once the Deployment shrinks, a
// new pod gets an address at once.
func TestRealNodeRangeExhausted(t *testing.T) {
	t.Parallel()
	l, ctx := labtest.Start(t, 8*time.Minute, "--nodes", "1", "--node-cidr-mask-size", "28")
	c := l.Client(t)
	const ns = "exhaust"
	if _, err := c.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// The node's other pods with an address: CoreDNS (2), the controller (2).
	others, err := c.CoreV1().Pods("").List(ctx, metav1.ListOptions{FieldSelector: "spec.nodeName=node1"})
	if err != nil {
		t.Fatal(err)
	}
	used := 0
	for _, p := range others.Items {
		if !p.Spec.HostNetwork {
			used++
		}
	}
	free := 13 - used
	labels := map[string]string{"app": "fill"}
	dep := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "fill", Namespace: ns},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(int32(free + 3)),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{lab.EchoContainer("echo", lab.EchoImage, 8080, corev1.ProtocolTCP)}},
			},
		},
	}
	if _, err := c.AppsV1().Deployments(ns).Create(ctx, dep, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// free pods Ready; the other 3 with the CNI error in their events.
	ready, err := lab.WaitEchoPods(ctx, c, ns, "app=fill", free, 3*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	var failing []string
	for {
		events, err := c.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: "reason=FailedCreatePodSandBox"})
		if err != nil {
			t.Fatal(err)
		}
		seen := map[string]bool{}
		for _, e := range events.Items {
			if strings.Contains(e.Message, "no free address") && strings.Contains(e.Message, "every address is in use") {
				seen[e.InvolvedObject.Name] = true
			}
		}
		failing = failing[:0]
		for n := range seen {
			failing = append(failing, n)
		}
		if len(failing) >= 3 {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("pods with berth-cni's 'no free address' in a FailedCreatePodSandBox event: %v, want 3", failing)
		case <-time.After(time.Second):
		}
	}
	pods, err := c.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=fill"})
	if err != nil {
		t.Fatal(err)
	}
	addressed := 0
	for _, p := range pods.Items {
		if p.Status.PodIP != "" {
			addressed++
		}
	}
	if addressed != free {
		t.Errorf("%d pods have an address, want %d (13 in the /28 less the node's %d other pods)", addressed, free, used)
	}
	// The pods with an address serve, from the node.
	node, err := netns.Open(l.Config(t).NodeNamespace(1))
	if err != nil {
		t.Fatal(err)
	}
	defer node.Close()
	for _, p := range ready {
		if _, err := lab.EchoUntil(ctx, node, p.Status.PodIP+":8080", 30*time.Second); err != nil {
			t.Errorf("pod %s %s: %v", p.Name, p.Status.PodIP, err)
		}
	}
	// Fewer replicas: the pods without an address go; a new one gets one.
	if _, err := c.AppsV1().Deployments(ns).Patch(ctx, "fill", "application/merge-patch+json",
		fmt.Appendf(nil, `{"spec":{"replicas":%d}}`, free-1), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	probe := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "after", Namespace: ns, Labels: map[string]string{"app": "after"}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{lab.EchoContainer("echo", lab.EchoImage, 8080, corev1.ProtocolTCP)}},
	}
	if _, err := c.CoreV1().Pods(ns).Create(ctx, probe, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := lab.WaitEchoPods(ctx, c, ns, "app=after", 1, 2*time.Minute); err != nil {
		t.Fatalf("a pod after the Deployment shrank: %v", err)
	}
}
