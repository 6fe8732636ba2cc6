package kube

import (
	"fmt"
	"net/netip"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/berthnet/berth/proxy"
)

func TestState(t *testing.T) {
	svcs := []corev1.Service{
		{
			ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web"},
			Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, ClusterIP: "10.96.0.5", ClusterIPs: []string{"10.96.0.5"},
				ExternalTrafficPolicy: corev1.ServiceExternalTrafficPolicyLocal, HealthCheckNodePort: 32000,
				Ports: []corev1.ServicePort{{Name: "http", Port: 80, NodePort: 30080, Protocol: corev1.ProtocolTCP}}},
			Status: corev1.ServiceStatus{LoadBalancer: corev1.LoadBalancerStatus{Ingress: []corev1.LoadBalancerIngress{{IP: "192.0.2.10"}, {Hostname: "lb.example"}}}},
		},
		{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "headless"}, Spec: corev1.ServiceSpec{ClusterIP: corev1.ClusterIPNone}},
		{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "ext"}, Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName, ExternalName: "x.example"}},
	}
	slices := []discoveryv1.EndpointSlice{{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web-abc", Labels: map[string]string{discoveryv1.LabelServiceName: "web"}},
		Ports:      []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To(int32(8080)), Protocol: ptr.To(corev1.ProtocolTCP)}},
		Endpoints: []discoveryv1.Endpoint{
			{Addresses: []string{"10.244.1.5"}, NodeName: ptr.To("node1"), Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}},
			{Addresses: []string{"10.244.2.5"}, NodeName: ptr.To("node2"), Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(false), Serving: ptr.To(true), Terminating: ptr.To(true)}},
		},
	}}
	st := State("node1", svcs, slices, nil)
	if len(st.Services) != 1 {
		t.Fatalf("services %+v: want only web (headless and ExternalName have no proxying)", st.Services)
	}
	sp := st.Services[0]
	if sp.Key != (proxy.PortKey{Namespace: "shop", Name: "web", Port: "http", Protocol: "tcp"}) || sp.NodePort != 30080 || !sp.ExternalLocal || sp.HealthCheckNodePort != 32000 ||
		len(sp.LoadBalancerIPs) != 1 || sp.LoadBalancerIPs[0] != netip.MustParseAddr("192.0.2.10") {
		t.Errorf("service port %+v", sp)
	}
	eps := st.Endpoints[sp.Key]
	got := fmt.Sprint(eps)
	want := "[{10.244.1.5 8080 true true false true} {10.244.2.5 8080 false true true false}]"
	if got != want {
		t.Errorf("endpoints %s, want %s", got, want)
	}
}
