package gatewayapi

import (
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
	gwv1b1 "sigs.k8s.io/gateway-api/apis/v1beta1"
)

// base is a GatewayClass, a Gateway infra/gw with one HTTP listener on 80
// open to all namespaces, and Service app/web:8080.
func base() *Resources {
	all := gwv1.NamespacesFromAll
	return &Resources{
		GatewayClasses: []gwv1.GatewayClass{{ObjectMeta: metav1.ObjectMeta{Name: "berth"}, Spec: gwv1.GatewayClassSpec{ControllerName: GatewayControllerName}}},
		Gateways: []gwv1.Gateway{{
			ObjectMeta: metav1.ObjectMeta{Namespace: "infra", Name: "gw"},
			Spec: gwv1.GatewaySpec{GatewayClassName: "berth", Listeners: []gwv1.Listener{{
				Name: "http", Port: 80, Protocol: gwv1.HTTPProtocolType,
				AllowedRoutes: &gwv1.AllowedRoutes{Namespaces: &gwv1.RouteNamespaces{From: &all}},
			}}},
		}},
		Services: []corev1.Service{service("app", "web", 8080), service("backends", "api", 8080)},
	}
}

func service(ns, name string, port int32) corev1.Service {
	return corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: port}}}}
}

func ptr[T any](v T) *T { return &v }

// httpRoute is route ns/name on infra/gw, created at minute age, with one
// rule per match, each to app/web:8080.
func httpRoute(ns, name string, age int, matches ...gwv1.HTTPRouteMatch) gwv1.HTTPRoute {
	r := gwv1.HTTPRoute{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name,
			CreationTimestamp: metav1.NewTime(time.Date(2026, 1, 1, 0, age, 0, 0, time.UTC))},
		Spec: gwv1.HTTPRouteSpec{CommonRouteSpec: gwv1.CommonRouteSpec{ParentRefs: []gwv1.ParentReference{{
			Name: "gw", Namespace: ptr(gwv1.Namespace("infra")),
		}}}},
	}
	for _, m := range matches {
		r.Spec.Rules = append(r.Spec.Rules, gwv1.HTTPRouteRule{
			Matches:     []gwv1.HTTPRouteMatch{m},
			BackendRefs: []gwv1.HTTPBackendRef{backendRef("", "web", 8080)},
		})
	}
	return r
}

func backendRef(ns, name string, port int32) gwv1.HTTPBackendRef {
	ref := gwv1.HTTPBackendRef{BackendRef: gwv1.BackendRef{BackendObjectReference: gwv1.BackendObjectReference{
		Name: gwv1.ObjectName(name), Port: ptr(gwv1.PortNumber(port)),
	}}}
	if ns != "" {
		ref.Namespace = ptr(gwv1.Namespace(ns))
	}
	return ref
}

func path(t gwv1.PathMatchType, v string) gwv1.HTTPRouteMatch {
	return gwv1.HTTPRouteMatch{Path: &gwv1.HTTPPathMatch{Type: &t, Value: &v}}
}

func grant(ns string, fromKind gwv1.Kind, fromNS string, toKind gwv1.Kind, toName string) gwv1b1.ReferenceGrant {
	g := gwv1b1.ReferenceGrant{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "grant"},
		Spec: gwv1b1.ReferenceGrantSpec{
			From: []gwv1b1.ReferenceGrantFrom{{Group: gwv1.GroupName, Kind: fromKind, Namespace: gwv1.Namespace(fromNS)}},
			To:   []gwv1b1.ReferenceGrantTo{{Group: "", Kind: toKind}},
		},
	}
	if toName != "" {
		g.Spec.To[0].Name = ptr(gwv1.ObjectName(toName))
	}
	return g
}
