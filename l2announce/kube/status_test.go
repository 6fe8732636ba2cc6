package kube

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"testing"

	"github.com/go-logr/logr/testr"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/berthnet/berth/l2announce"
	"github.com/berthnet/berth/test/kubetest"
)

// The status writer, with only the agent's role, puts the state
// annotation and the condition on a Service in one status write, against
// a real API server: two nodes each writing their own address of a
// dual-stack Service, and a report of an address the Service no longer
// has changing nothing.
func TestStatusWriterAnnotation(t *testing.T) {
	env := kubetest.Start(t, kubetest.Options{})
	ctx := context.Background()
	admin, err := client.New(env.Config, client.Options{Scheme: clientgoscheme.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	agent := env.AgentClient(t, clientgoscheme.Scheme)

	dual := corev1.IPFamilyPolicyPreferDualStack
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "web"},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, IPFamilyPolicy: &dual,
			Ports: []corev1.ServicePort{{Port: 80}}}}
	if err := admin.Create(ctx, svc); err != nil {
		t.Fatal(err)
	}
	svc.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "198.18.0.200"}, {IP: "2001:db8::5"}}
	if err := admin.Status().Update(ctx, svc); err != nil {
		t.Fatal(err)
	}

	w := &StatusWriter{Client: agent, Log: testr.New(t)}
	v4, v6 := netip.MustParseAddr("198.18.0.200"), netip.MustParseAddr("2001:db8::5")
	for _, r := range []l2announce.Report{
		{Addr: v4, Services: []string{"default/web"}, State: l2announce.Announcing, Node: "node1", Interfaces: []string{"eth0"}},
		{Addr: v6, Services: []string{"default/web"}, State: l2announce.Conflict, Node: "node2", Interfaces: []string{"eth1"}, ConflictMAC: net.HardwareAddr{2, 0, 0, 0, 0, 9}},
		{Addr: netip.MustParseAddr("198.18.0.201"), Services: []string{"default/web"}, State: l2announce.Announcing, Node: "node3", Interfaces: []string{"eth0"}},
	} {
		if err := w.write(ctx, r); err != nil {
			t.Fatalf("write %s: %v", r.Describe(), err)
		}
	}
	var got corev1.Service
	if err := admin.Get(ctx, client.ObjectKeyFromObject(svc), &got); err != nil {
		t.Fatal(err)
	}
	want := `{"198.18.0.200":{"state":"Announcing","node":"node1","interfaces":["eth0"]},"2001:db8::5":{"state":"Conflict","node":"node2","interfaces":["eth1"],"conflictMAC":"02:00:00:00:00:09"}}`
	if a := got.Annotations[AnnotationState]; a != want {
		t.Errorf("annotation\n%s\nwant\n%s", a, want)
	}
	c := meta.FindStatusCondition(got.Status.Conditions, ConditionAnnounced)
	wantMsg := "198.18.0.200 announced by node1 on eth0; 2001:db8::5 is in use by 02:00:00:00:00:09 on the LAN (node2 probed on eth1), so it is not announced"
	if c == nil || c.Status != metav1.ConditionFalse || c.Reason != ReasonAddressConflict || c.Message != wantMsg {
		t.Errorf("condition %+v; want False, %s, %q", c, ReasonAddressConflict, wantMsg)
	}
	if fmt.Sprint(got.Spec.Type) != "LoadBalancer" {
		t.Errorf("spec changed: %+v", got.Spec)
	}
}
