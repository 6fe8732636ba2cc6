package e2e

import (
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/berthnet/berth/api/v1alpha1"
	"github.com/berthnet/berth/lab"
	"github.com/berthnet/berth/test/labtest"
)

// LoadBalancer addresses over BGP to the lab router (BIRD): every node
// advertises the address with itself as next hop, the router installs all
// of them (ECMP) and the external client behind it reaches the Service; a
// node whose agent stops gracefully is withdrawn first and the others keep
// serving; with policy Local
// only the node with the pod advertises, until the pod goes; a deleted
// Service is withdrawn; a wrong peer ASN shows in the BGPPeer's status.
func TestBGP(t *testing.T) {
	t.Parallel()
	l, ctx := labtest.Start(t, 8*time.Minute)
	cfg := l.Config(t)
	c := l.Client(t)
	const ns = "bgp"
	if _, err := c.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	labels := map[string]string{"app": "web"}
	ds := &appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: ns},
		Spec: appsv1.DaemonSetSpec{Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{Containers: []corev1.Container{lab.EchoContainer("web", lab.EchoImage, 8080, corev1.ProtocolTCP)}}}}}
	if _, err := c.AppsV1().DaemonSets(ns).Create(ctx, ds, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := lab.WaitEchoPods(ctx, c, ns, "app=web", cfg.Nodes, 2*time.Minute); err != nil {
		t.Fatal(err)
	}
	service := func(name string, selector map[string]string, policy corev1.ServiceExternalTrafficPolicy) netip.Addr {
		t.Helper()
		svc := &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Annotations: map[string]string{"berth.dev/ip-pool": lab.BGPPoolName}},
			Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, Selector: selector, ExternalTrafficPolicy: policy,
				Ports: []corev1.ServicePort{{Name: "http", Port: 8080, TargetPort: intstr.FromString("serve")}}},
		}
		if _, err := c.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		addr, err := lab.WaitAddress(ctx, c, ns, name, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		return addr
	}
	// hops waits until the router's route for addr goes via exactly the
	// given nodes (none: no route).
	hops := func(addr netip.Addr, nodes ...int) {
		t.Helper()
		var want []string
		for _, i := range nodes {
			want = append(want, "via "+cfg.NodeAddr(i).String()+" ")
		}
		waitUntil(t, time.Minute, fmt.Sprintf("router route for %s via nodes %v", addr, nodes), func() error {
			r, err := cfg.RouterRoute(ctx, addr)
			if err != nil {
				return err
			}
			if got := strings.Count(r, "via "); got != len(want) {
				return fmt.Errorf("%d next hops: %s", got, r)
			}
			for _, w := range want {
				if !strings.Contains(r, w) {
					return fmt.Errorf("no %q in %s", w, r)
				}
			}
			if len(want) > 0 && !strings.Contains(r, fmt.Sprintf("(%d,100)", lab.NodeASN)) {
				return fmt.Errorf("no community (%d,100) in %s", lab.NodeASN, r)
			}
			return nil
		})
	}
	all := []int{}
	for i := 1; i <= cfg.Nodes; i++ {
		all = append(all, i)
	}

	web := service("web", labels, corev1.ServiceExternalTrafficPolicyCluster)
	hops(web, all...)
	// The router's kernel spreads traffic over every node.
	router := l.Namespace(t, "router")
	if out, err := router.Command(ctx, "ip", "route", "show", web.String()).CombinedOutput(); err != nil || strings.Count(string(out), "nexthop via") != cfg.Nodes {
		t.Errorf("router kernel route for %s: %s (%v); want %d next hops", web, out, err, cfg.Nodes)
	}
	external := l.Namespace(t, "external")
	r := eventually(t, func() (lab.EchoReply, error) {
		return lab.EchoFromAddr(ctx, external, net.JoinHostPort(web.String(), "8080"))
	})
	t.Logf("external client → %s: answered by %s on %s", web, r.PodIP, r.Node)

	// Every node reports its session and what it advertises.
	peerStatus := func(check func(v1alpha1.BGPPeerNodeStatus) error) {
		t.Helper()
		waitUntil(t, time.Minute, "BGPPeer status", func() error {
			out, err := l.Kubectl(ctx, "get", "bgppeer", lab.BGPPeerName, "-o", "json")
			if err != nil {
				return err
			}
			var p v1alpha1.BGPPeer
			if err := json.Unmarshal([]byte(out), &p); err != nil {
				return err
			}
			if len(p.Status.Nodes) != cfg.Nodes {
				return fmt.Errorf("%d node entries: %+v", len(p.Status.Nodes), p.Status.Nodes)
			}
			for _, n := range p.Status.Nodes {
				if err := check(n); err != nil {
					return fmt.Errorf("%s: %w", n.Node, err)
				}
			}
			return nil
		})
	}
	peerStatus(func(n v1alpha1.BGPPeerNodeStatus) error {
		if n.State != v1alpha1.BGPSessionEstablished || n.PrefixesAdvertised < 1 {
			return fmt.Errorf("state %s, %d advertised", n.State, n.PrefixesAdvertised)
		}
		return nil
	})

	// A graceful stop of node1's agent withdraws node1 first.
	done := make(chan error, 1)
	go func() {
		out, err := l.Berthctl(ctx, "lab", "restart-agent", "--name", l.Name, "--node", "1", "--down-for", "3s")
		if err != nil {
			err = fmt.Errorf("%v: %s", err, out)
		}
		done <- err
	}()
	hops(web, all[1:]...)
	// The external client keeps being served by the other nodes.
	if _, err := lab.EchoUntil(ctx, external, net.JoinHostPort(web.String(), "8080"), 10*time.Second); err != nil {
		t.Errorf("with node1's agent stopped: %v", err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	hops(web, all...)

	// Policy Local: only the node with the pod advertises, until it goes.
	one := map[string]string{"app": "one"}
	dep := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "one", Namespace: ns},
		Spec: appsv1.DeploymentSpec{Replicas: ptr.To(int32(1)), Selector: &metav1.LabelSelector{MatchLabels: one},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: one},
				Spec: corev1.PodSpec{Containers: []corev1.Container{lab.EchoContainer("one", lab.EchoImage, 8080, corev1.ProtocolTCP)}}}}}
	if _, err := c.AppsV1().Deployments(ns).Create(ctx, dep, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pods, err := lab.WaitEchoPods(ctx, c, ns, "app=one", 1, 2*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	node := 0
	for i := 1; i <= cfg.Nodes; i++ {
		if cfg.NodeName(i) == pods[0].Spec.NodeName {
			node = i
		}
	}
	local := service("local", one, corev1.ServiceExternalTrafficPolicyLocal)
	hops(local, node)
	if _, err := c.AppsV1().Deployments(ns).Patch(ctx, "one", types.MergePatchType, []byte(`{"spec":{"replicas":0}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	hops(local)

	// A deleted Service is withdrawn everywhere.
	if err := c.CoreV1().Services(ns).Delete(ctx, "web", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	hops(web)

	// A wrong peer ASN: the sessions fail and the status says why; fixed,
	// they come back.
	patch := func(asn int) {
		t.Helper()
		if _, err := l.Kubectl(ctx, "patch", "bgppeer", lab.BGPPeerName, "--type=merge", "-p", fmt.Sprintf(`{"spec":{"peerASN":%d}}`, asn)); err != nil {
			t.Fatal(err)
		}
	}
	patch(65999)
	peerStatus(func(n v1alpha1.BGPPeerNodeStatus) error {
		if n.State == v1alpha1.BGPSessionEstablished || n.LastError == "" {
			return fmt.Errorf("state %s, last error %q", n.State, n.LastError)
		}
		return nil
	})
	patch(lab.RouterASN)
	peerStatus(func(n v1alpha1.BGPPeerNodeStatus) error {
		if n.State != v1alpha1.BGPSessionEstablished {
			return fmt.Errorf("state %s, last error %q", n.State, n.LastError)
		}
		return nil
	})
}
