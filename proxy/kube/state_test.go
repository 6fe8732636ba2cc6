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
	st := State("node1", svcs, slices, nil, nil)
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

// spec.externalIPs are served only within the operator's ranges: none by
// default, since any Service author can write any address there.
func TestExternalIPsAllowList(t *testing.T) {
	svc := corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "tenant", Name: "grab"},
		Spec: corev1.ServiceSpec{ClusterIP: "10.96.0.7", ClusterIPs: []string{"10.96.0.7"},
			ExternalIPs: []string{"192.0.2.20", "10.96.0.10", "2001:db8::20", "not-an-ip"},
			Ports:       []corev1.ServicePort{{Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP}}},
	}
	for _, tc := range []struct {
		name    string
		cidrs   []netip.Prefix
		want    string
		refused int
	}{
		{"none allowed (the default)", nil, "[]", 4},
		{"one IPv4 range", []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}, "[192.0.2.20]", 3},
		{"both families", []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24"), netip.MustParsePrefix("2001:db8::/64")}, "[192.0.2.20 2001:db8::20]", 2},
		{"everything (kube-proxy's behaviour)", []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")}, "[192.0.2.20 10.96.0.10 2001:db8::20]", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ports, _ := ServicePorts("node1", &svc, nil, tc.cidrs)
			if len(ports) != 1 {
				t.Fatalf("ports %+v", ports)
			}
			if got := fmt.Sprint(ports[0].ExternalIPs); got != tc.want {
				t.Errorf("served %s, want %s", got, tc.want)
			}
			if got := RefusedExternalIPs(&svc, tc.cidrs); got != tc.refused {
				t.Errorf("refused %d, want %d", got, tc.refused)
			}
		})
	}
}
