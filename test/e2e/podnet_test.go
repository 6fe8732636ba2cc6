package e2e

import (
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/berthnet/berth/lab"
	"github.com/berthnet/berth/test/labtest"
	"github.com/berthnet/berth/test/netnstest"
)

// The pod network in the lab, in routed, VXLAN and BGP mode: pods reach pods on
// the same node and across nodes with their own addresses (no NAT), every
// node reaches every pod, pod traffic to outside the cluster is masqueraded,
// and a deleted route comes back.
func TestPodNetwork(t *testing.T) {
	netnstest.RequireRoot(t)
	for _, mode := range []string{"routed", "vxlan", "bgp"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			l, ctx := labtest.Start(t, 5*time.Minute, "--pod-network-mode", mode)
			cfg := l.Config(t)

			// Every pod to every pod and every node to every pod; the
			// servers report the client address they saw.
			pods := l.Demo(ctx, t)
			c := l.Client(t)

			// A second pod on node1 reaches the DaemonSet's pod there.
			extra := &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Name: "extra", Namespace: lab.DemoNamespace, Labels: map[string]string{"role": "extra"}},
				Spec:       corev1.PodSpec{NodeName: "node1", Containers: []corev1.Container{lab.EchoContainer("echo", lab.EchoImage, 8080, corev1.ProtocolTCP)}},
			}
			if _, err := c.CoreV1().Pods(lab.DemoNamespace).Create(ctx, extra, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			extras, err := lab.WaitEchoPods(ctx, c, lab.DemoNamespace, "role=extra", 1, time.Minute)
			if err != nil {
				t.Fatal(err)
			}
			extraNS := openPod(t, cfg, extras[0])
			for _, p := range pods {
				if p.Spec.NodeName != "node1" {
					continue
				}
				r, err := lab.EchoFrom(ctx, extraNS, p.Status.PodIP)
				if err != nil || r.Client != extras[0].Status.PodIP {
					t.Errorf("same-node pod to pod: reply %+v, err %v; want the client seen as %s", r, err, extras[0].Status.PodIP)
				}
			}

			// Across nodes over IPv6 too (the lab is dual-stack): directly
			// in routed mode, inside the IPv4 underlay in VXLAN mode.
			if mode != "bgp" {
				from := podIPOf(extras[0], true)
				for _, p := range pods {
					if p.Spec.NodeName == "node1" {
						continue
					}
					r, err := lab.EchoFrom(ctx, extraNS, podIPOf(p, true))
					if err != nil || r.Client != from {
						t.Errorf("pod to pod across nodes over IPv6 (%s on %s): reply %+v, err %v; want the client seen as %s", podIPOf(p, true), p.Spec.NodeName, r, err, from)
					}
				}
			}

			// Pod to outside the cluster: the external client behind the
			// router sees the node's address.
			external := l.Namespace(t, "external")
			seen := netnstest.Connect(t, external, extraNS, "203.0.113.2:9000")
			if want := cfg.NodeAddr(1).String() + ":"; !strings.HasPrefix(seen, want) {
				t.Errorf("external client saw the pod as %s, want node1's address %s", seen, cfg.NodeAddr(1))
			}

			// A deleted route comes back within the agent's resync.
			node1 := l.Namespace(t, "node1")
			var other corev1.Pod
			for _, p := range pods {
				if p.Spec.NodeName == "node2" {
					other = p
				}
			}
			node2, err := c.CoreV1().Nodes().Get(ctx, "node2", metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			_, dst, err := net.ParseCIDR(node2.Spec.PodCIDR)
			if err != nil {
				t.Fatal(err)
			}
			routes, err := node1.Netlink().RouteList(nil, 0)
			if err != nil {
				t.Fatal(err)
			}
			deleted := false
			for _, r := range routes {
				if r.Dst != nil && r.Dst.String() == dst.String() {
					if err := node1.Netlink().RouteDel(&r); err != nil {
						t.Fatal(err)
					}
					deleted = true
				}
			}
			if !deleted {
				t.Fatalf("node1 has no route to node2's pods %v", dst)
			}
			deadline := time.Now().Add(30 * time.Second)
			for {
				_, err := lab.EchoFrom(ctx, extraNS, other.Status.PodIP)
				if err == nil {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("route to node2's pods not restored: %v", err)
				}
				time.Sleep(200 * time.Millisecond)
			}
			// Deleting a pod frees its address and namespace.
			if err := c.CoreV1().Pods(lab.DemoNamespace).Delete(ctx, "extra", metav1.DeleteOptions{}); err != nil {
				t.Fatal(err)
			}
			waitPodGone(t, l.Namespace(t, "node1"), extraNS)
		})
	}
}

// podIPOf is the pod's IPv6 address (v6) or IPv4 address, "" if it has none.
func podIPOf(p corev1.Pod, v6 bool) string {
	for _, ip := range p.Status.PodIPs {
		if a, err := netip.ParseAddr(ip.IP); err == nil && a.Is6() == v6 {
			return a.String()
		}
	}
	return ""
}
