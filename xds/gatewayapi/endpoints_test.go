package gatewayapi

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/berthnet/berth/xds/ir"
)

func endpointSlice(ns, svc, name string, ports map[string]int32, eps ...discoveryv1.Endpoint) discoveryv1.EndpointSlice {
	s := discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{discoveryv1.LabelServiceName: svc}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   eps,
	}
	for n, p := range ports {
		s.Ports = append(s.Ports, discoveryv1.EndpointPort{Name: ptr(n), Port: ptr(p)})
	}
	return s
}

func ep(addr string, ready, serving, terminating *bool) discoveryv1.Endpoint {
	return discoveryv1.Endpoint{Addresses: []string{addr},
		Conditions: discoveryv1.EndpointConditions{Ready: ready, Serving: serving, Terminating: terminating}}
}

func TestEndpoints(t *testing.T) {
	yes, no := ptr(true), ptr(false)
	clusters := []*ir.Cluster{
		{Name: "app/web/80", Namespace: "app", Service: "web", Port: 80, PortName: "http"},
		{Name: "app/web/9090", Namespace: "app", Service: "web", Port: 9090, PortName: "admin"},
		{Name: "app/single/80", Namespace: "app", Service: "single", Port: 80, PortName: ""},
		{Name: "app/empty/80", Namespace: "app", Service: "empty", Port: 80, PortName: "http"},
	}
	slices := []discoveryv1.EndpointSlice{
		endpointSlice("app", "web", "web-1", map[string]int32{"http": 8080, "admin": 9091},
			ep("10.0.0.2", yes, yes, no),
			ep("10.0.0.1", nil, nil, nil),  // nil conditions: ready
			ep("10.0.0.3", no, yes, yes),   // draining: kept, terminating
			ep("10.0.0.4", no, no, no),     // not ready: dropped
			ep("10.0.0.5", no, no, yes),    // terminating, not serving: dropped
			ep("10.0.0.6", yes, yes, yes)), // terminating wins over a stale ready
		// The same address in a second slice while slices are replaced.
		endpointSlice("app", "web", "web-2", map[string]int32{"http": 8080}, ep("10.0.0.2", yes, yes, no), ep("10.0.0.3", yes, yes, no)),
		endpointSlice("app", "single", "single-1", map[string]int32{"": 8000}, ep("10.0.1.1", yes, yes, no)),
		// Same Service name, other namespace; other Service: ignored.
		endpointSlice("other", "web", "web-1", map[string]int32{"http": 8080}, ep("10.9.9.9", yes, yes, no)),
		endpointSlice("app", "unrelated", "u-1", map[string]int32{"http": 8080}, ep("10.9.9.8", yes, yes, no)),
	}
	got := Endpoints(clusters, slices)
	want := ir.Endpoints{
		"app/web/80": {
			{Address: "10.0.0.1", Port: 8080},
			{Address: "10.0.0.2", Port: 8080},
			{Address: "10.0.0.3", Port: 8080}, // ready in web-2
			{Address: "10.0.0.6", Port: 8080, Terminating: true},
		},
		"app/web/9090": {
			{Address: "10.0.0.1", Port: 9091},
			{Address: "10.0.0.2", Port: 9091},
			{Address: "10.0.0.3", Port: 9091, Terminating: true},
			{Address: "10.0.0.6", Port: 9091, Terminating: true},
		},
		"app/single/80": {{Address: "10.0.1.1", Port: 8000}},
		"app/empty/80":  {},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Fatalf("Endpoints (-want +got):\n%s", d)
	}
}
