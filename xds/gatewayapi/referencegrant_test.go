package gatewayapi

import (
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
	gwv1b1 "sigs.k8s.io/gateway-api/apis/v1beta1"
)

// TestReferenceGrant sends route app/r to Service backends/api under
// different grants and checks ResolvedRefs and where traffic goes.
func TestReferenceGrant(t *testing.T) {
	for _, tc := range []struct {
		name    string
		grants  []gwv1b1.ReferenceGrant
		allowed bool
	}{
		{"no grant", nil, false},
		{"grant for routes from app", []gwv1b1.ReferenceGrant{grant("backends", "HTTPRoute", "app", "Service", "")}, true},
		{"grant naming the Service", []gwv1b1.ReferenceGrant{grant("backends", "HTTPRoute", "app", "Service", "api")}, true},
		{"grant naming another Service", []gwv1b1.ReferenceGrant{grant("backends", "HTTPRoute", "app", "Service", "other")}, false},
		{"grant for another namespace", []gwv1b1.ReferenceGrant{grant("backends", "HTTPRoute", "elsewhere", "Service", "")}, false},
		{"grant for GRPCRoutes", []gwv1b1.ReferenceGrant{grant("backends", "GRPCRoute", "app", "Service", "")}, false},
		{"grant for Secrets", []gwv1b1.ReferenceGrant{grant("backends", "HTTPRoute", "app", "Secret", "")}, false},
		{"grant in the route's namespace", []gwv1b1.ReferenceGrant{grant("app", "HTTPRoute", "app", "Service", "")}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := base()
			res.ReferenceGrants = tc.grants
			r := httpRoute("app", "r", 0, gwv1.HTTPRouteMatch{})
			r.Spec.Rules[0].BackendRefs = []gwv1.HTTPBackendRef{backendRef("backends", "api", 8080)}
			res.HTTPRoutes = append(res.HTTPRoutes, r)
			out := Translate(res, Options{})

			refs := findCondition(out.HTTPRoutes[0].Parents[0].Conditions, "ResolvedRefs")
			route := out.Groups[0].HTTP[0].Routes[0]
			if tc.allowed {
				if refs.Status != metav1.ConditionTrue || len(route.Backends) != 1 || route.Backends[0].Cluster != "backends/api/8080" {
					t.Fatalf("want the Service used: ResolvedRefs %v, route %+v", refs, route)
				}
				return
			}
			if refs.Status != metav1.ConditionFalse || refs.Reason != "RefNotPermitted" {
				t.Fatalf("ResolvedRefs = %+v, want False RefNotPermitted", refs)
			}
			if route.DirectResponse == nil || route.DirectResponse.Status != 500 || len(out.Groups[0].Clusters) != 0 {
				t.Fatalf("want a 500 and no cluster, got route %+v clusters %v", route, out.Groups[0].Clusters)
			}
		})
	}
}
