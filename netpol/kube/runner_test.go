package kube

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/berthnet/berth/internal/nftrules"
	"github.com/berthnet/berth/netpol"
)

// The runner reads the node, namespaces, pods and policies, compiles this
// node's table and reports the outcome on the Node: an event when syncs
// start failing and one when they succeed again, none while nothing
// changes.
func TestRunnerSyncsAndReports(t *testing.T) {
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}, Spec: corev1.NodeSpec{PodCIDRs: []string{"10.244.1.0/24"}},
		Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "192.0.2.1"}}}}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop", Labels: map[string]string{"team": "a"}}}
	web := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web", Labels: map[string]string{"app": "web"}},
		Spec: corev1.PodSpec{NodeName: "n1"}, Status: corev1.PodStatus{PodIPs: []corev1.PodIP{{IP: "10.244.1.5"}}}}
	host := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "host"},
		Spec: corev1.PodSpec{NodeName: "n1", HostNetwork: true}, Status: corev1.PodStatus{PodIPs: []corev1.PodIP{{IP: "192.0.2.1"}}}}
	pol := &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "deny"},
		Spec: networkingv1.NetworkPolicySpec{PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}}}
	c := fake.NewClientBuilder().WithScheme(scheme.Scheme).WithObjects(node, ns, web, host, pol).Build()
	nft := nftrules.NewFake(netpol.Table)
	rec := events.NewFakeRecorder(10)
	r := NewRunner("n1", c, netpol.NewSyncer(nft), 0, logr.Discard())
	r.Recorder = rec
	broken := errors.New("br_netfilter missing")
	r.Prepare = func() error { return broken }
	ctx := context.Background()
	for range 2 {
		if err := r.sync(ctx); !errors.Is(err, broken) {
			t.Fatalf("sync: %v", err)
		}
	}
	r.Prepare = nil
	for range 2 {
		if err := r.sync(ctx); err != nil {
			t.Fatal(err)
		}
	}
	close(rec.Events)
	var got []string
	for e := range rec.Events {
		got = append(got, e)
	}
	if len(got) != 2 || !strings.Contains(got[0], "NetworkPolicyFailed") || !strings.Contains(got[0], "br_netfilter missing") || !strings.Contains(got[1], "NetworkPolicyReady") {
		t.Errorf("events: %q", got)
	}
	rs, _ := nft.Ruleset()
	if v := rs.Maps["ingress-pods4"].Elements["10.244.1.5"]; v != "goto in-shop/web" {
		t.Errorf("web is not isolated in the table: %q", v)
	}
	if _, ok := rs.Maps["ingress-pods4"].Elements["192.0.2.1"]; ok {
		t.Errorf("a host-network pod was compiled")
	}
	if s := rs.Sets["local-cidrs4"]; len(s.Elements) != 1 || s.Elements[0] != "10.244.1.0/24" {
		t.Errorf("the node's pod range is not guarded: %+v", s.Elements)
	}
}
