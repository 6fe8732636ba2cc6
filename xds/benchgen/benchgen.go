// Package benchgen generates the benchmark input of Berth's Gateway API
// translation (issue 8): one GatewayClass, one Gateway with an HTTP
// listener on port 80 for *.example.com that allows routes from all
// namespaces, and N HTTPRoutes spread over 50 namespaces. Route i serves
// ri.example.com with two rules: PathPrefix /api/vi to Service svc-i port
// 8080, and Exact /healthz with a RequestHeaderModifier to the same
// Service. Each Service has one EndpointSlice with two ready endpoints.
// The output is deterministic, so runs compare.
package benchgen

import (
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// Shape of the input.
const (
	Namespaces       = 50
	GatewayClassName = "berth"
	GatewayName      = "bench"
	// GatewayNamespace is the first route namespace.
	GatewayNamespace = "bench-0"
	ListenerName     = "http"
	ServicePort      = 8080
	ControllerName   = "berth.dev/gateway"
)

// Input is one generated snapshot.
type Input struct {
	GatewayClass   gwv1.GatewayClass
	Gateway        gwv1.Gateway
	Namespaces     []corev1.Namespace
	HTTPRoutes     []gwv1.HTTPRoute
	Services       []corev1.Service
	EndpointSlices []discoveryv1.EndpointSlice
}

// Object is what Objects returns: the method set of controller-runtime's
// client.Object, without importing it.
type Object interface {
	metav1.Object
	runtime.Object
}

// epoch is the creation time of the first generated object; route i is i
// seconds younger, so precedence ties break by age as in a real cluster.
func epoch() time.Time { return time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC) }

// Namespace is the namespace of route i.
func Namespace(i int) string { return fmt.Sprintf("bench-%d", i%Namespaces) }

// Generate builds the input with n HTTPRoutes.
func Generate(n int) *Input {
	in := &Input{
		GatewayClass: gwv1.GatewayClass{
			TypeMeta:   metav1.TypeMeta{APIVersion: gwv1.GroupVersion.String(), Kind: "GatewayClass"},
			ObjectMeta: metav1.ObjectMeta{Name: GatewayClassName, Generation: 1, CreationTimestamp: metav1.NewTime(epoch())},
			Spec:       gwv1.GatewayClassSpec{ControllerName: ControllerName},
		},
	}
	all := gwv1.NamespacesFromAll
	host := gwv1.Hostname("*.example.com")
	in.Gateway = gwv1.Gateway{
		TypeMeta:   metav1.TypeMeta{APIVersion: gwv1.GroupVersion.String(), Kind: "Gateway"},
		ObjectMeta: metav1.ObjectMeta{Namespace: GatewayNamespace, Name: GatewayName, Generation: 1, CreationTimestamp: metav1.NewTime(epoch())},
		Spec: gwv1.GatewaySpec{
			GatewayClassName: GatewayClassName,
			Listeners: []gwv1.Listener{{
				Name: ListenerName, Port: 80, Protocol: gwv1.HTTPProtocolType, Hostname: &host,
				AllowedRoutes: &gwv1.AllowedRoutes{Namespaces: &gwv1.RouteNamespaces{From: &all}},
			}},
		},
	}
	for i := 0; i < Namespaces && i < max(n, 1); i++ {
		in.Namespaces = append(in.Namespaces, corev1.Namespace{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Namespace"},
			ObjectMeta: metav1.ObjectMeta{Name: Namespace(i), Labels: map[string]string{"kubernetes.io/metadata.name": Namespace(i)}},
		})
	}
	in.HTTPRoutes = make([]gwv1.HTTPRoute, 0, n)
	in.Services = make([]corev1.Service, 0, n)
	in.EndpointSlices = make([]discoveryv1.EndpointSlice, 0, n)
	for i := range n {
		in.HTTPRoutes = append(in.HTTPRoutes, Route(i))
		in.Services = append(in.Services, service(i))
		in.EndpointSlices = append(in.EndpointSlices, slice(i))
	}
	return in
}

// ServiceName is the Service of route i.
func ServiceName(i int) string { return fmt.Sprintf("svc-%d", i) }

// Route is HTTPRoute i.
func Route(i int) gwv1.HTTPRoute {
	gwNS := gwv1.Namespace(GatewayNamespace)
	section := gwv1.SectionName(ListenerName)
	prefix, exact := gwv1.PathMatchPathPrefix, gwv1.PathMatchExact
	api, healthz := fmt.Sprintf("/api/v%d", i), "/healthz"
	port := gwv1.PortNumber(ServicePort)
	backend := []gwv1.HTTPBackendRef{{BackendRef: gwv1.BackendRef{BackendObjectReference: gwv1.BackendObjectReference{
		Name: gwv1.ObjectName(ServiceName(i)), Port: &port,
	}}}}
	return gwv1.HTTPRoute{
		TypeMeta: metav1.TypeMeta{APIVersion: gwv1.GroupVersion.String(), Kind: "HTTPRoute"},
		ObjectMeta: metav1.ObjectMeta{Namespace: Namespace(i), Name: fmt.Sprintf("r%d", i), Generation: 1,
			CreationTimestamp: metav1.NewTime(epoch().Add(time.Duration(i+1) * time.Second))},
		Spec: gwv1.HTTPRouteSpec{
			CommonRouteSpec: gwv1.CommonRouteSpec{ParentRefs: []gwv1.ParentReference{{
				Name: GatewayName, Namespace: &gwNS, SectionName: &section,
			}}},
			Hostnames: []gwv1.Hostname{gwv1.Hostname(fmt.Sprintf("r%d.example.com", i))},
			Rules: []gwv1.HTTPRouteRule{
				{
					Matches:     []gwv1.HTTPRouteMatch{{Path: &gwv1.HTTPPathMatch{Type: &prefix, Value: &api}}},
					BackendRefs: backend,
				},
				{
					Matches: []gwv1.HTTPRouteMatch{{Path: &gwv1.HTTPPathMatch{Type: &exact, Value: &healthz}}},
					Filters: []gwv1.HTTPRouteFilter{{
						Type: gwv1.HTTPRouteFilterRequestHeaderModifier,
						RequestHeaderModifier: &gwv1.HTTPHeaderFilter{
							Set: []gwv1.HTTPHeader{{Name: "X-Berth-Route", Value: fmt.Sprintf("r%d", i)}},
						},
					}},
					BackendRefs: backend,
				},
			},
		},
	}
}

func service(i int) corev1.Service {
	return corev1.Service{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
		ObjectMeta: metav1.ObjectMeta{Namespace: Namespace(i), Name: ServiceName(i)},
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": ServiceName(i)},
			Ports: []corev1.ServicePort{{
				Name: "http", Port: ServicePort, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromInt32(ServicePort),
			}},
		},
	}
}

func slice(i int) discoveryv1.EndpointSlice {
	ready := true
	name, port, proto := "http", int32(ServicePort), corev1.ProtocolTCP
	ep := func(k int) discoveryv1.Endpoint {
		// 10.<hi>.<lo>.<k>: distinct addresses for up to 65,536 routes.
		return discoveryv1.Endpoint{
			Addresses:  []string{fmt.Sprintf("10.%d.%d.%d", 1+(i>>8)&0xff, i&0xff, 10+k)},
			Conditions: discoveryv1.EndpointConditions{Ready: &ready, Serving: &ready},
		}
	}
	return discoveryv1.EndpointSlice{
		TypeMeta: metav1.TypeMeta{APIVersion: "discovery.k8s.io/v1", Kind: "EndpointSlice"},
		ObjectMeta: metav1.ObjectMeta{Namespace: Namespace(i), Name: ServiceName(i) + "-1",
			Labels: map[string]string{discoveryv1.LabelServiceName: ServiceName(i), discoveryv1.LabelManagedBy: "benchgen"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   []discoveryv1.Endpoint{ep(0), ep(1)},
		Ports:       []discoveryv1.EndpointPort{{Name: &name, Port: &port, Protocol: &proto}},
	}
}

// Objects returns every object, in an order an API server accepts them
// (namespaces first, routes last), as pointers into in.
func (in *Input) Objects() []Object {
	out := make([]Object, 0, len(in.Namespaces)+2+3*len(in.HTTPRoutes))
	for i := range in.Namespaces {
		out = append(out, &in.Namespaces[i])
	}
	out = append(out, &in.GatewayClass, &in.Gateway)
	for i := range in.Services {
		out = append(out, &in.Services[i])
	}
	for i := range in.EndpointSlices {
		out = append(out, &in.EndpointSlices[i])
	}
	for i := range in.HTTPRoutes {
		out = append(out, &in.HTTPRoutes[i])
	}
	return out
}
