package kube

import (
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// BenchmarkState10k turns 10,000 Services with 10 endpoints each into the
// proxy's state: the part of every sync that grows with the cluster.
func BenchmarkState10k(b *testing.B) {
	var svcs []corev1.Service
	var slices []discoveryv1.EndpointSlice
	for i := range 10000 {
		name := fmt.Sprintf("svc%d", i)
		ip := fmt.Sprintf("10.96.%d.%d", i/256, i%256)
		svcs = append(svcs, corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "bench", Name: name},
			Spec: corev1.ServiceSpec{ClusterIP: ip, ClusterIPs: []string{ip}, Ports: []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}}}})
		s := discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Namespace: "bench", Name: name + "-x", Labels: map[string]string{discoveryv1.LabelServiceName: name}},
			Ports: []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To(int32(8080)), Protocol: ptr.To(corev1.ProtocolTCP)}}}
		for j := range 10 {
			s.Endpoints = append(s.Endpoints, discoveryv1.Endpoint{Addresses: []string{fmt.Sprintf("10.%d.%d.%d", 128+j, i/256, i%256)}, NodeName: ptr.To("node1"),
				Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}})
		}
		slices = append(slices, s)
	}
	b.ReportAllocs()
	for b.Loop() {
		State("node1", svcs, slices, nil, nil)
	}
}
