package gatewayapi

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// TestPrecedence adds routes one step at a time to the same Gateway and
// checks the whole order of the listener after each step, so every
// criterion of the Gateway API's ordering is seen to win over the next.
func TestPrecedence(t *testing.T) {
	get := gwv1.HTTPMethodGet
	res := base()
	for _, step := range []struct {
		name  string
		add   gwv1.HTTPRoute
		order []string // "<route>/<rule>"
	}{
		{"catch-all", httpRoute("app", "a", 10, gwv1.HTTPRouteMatch{}), []string{"a/0"}},
		{"longer prefix first", httpRoute("app", "b", 20, path(gwv1.PathMatchPathPrefix, "/api")),
			[]string{"b/0", "a/0"}},
		{"exact before any prefix", httpRoute("app", "c", 30, path(gwv1.PathMatchExact, "/x")),
			[]string{"c/0", "b/0", "a/0"}},
		{"regex between exact and prefix", httpRoute("app", "d", 40, path(gwv1.PathMatchRegularExpression, "/r.*")),
			[]string{"c/0", "d/0", "b/0", "a/0"}},
		{"method wins over no method", httpRoute("app", "e", 50, gwv1.HTTPRouteMatch{Path: path(gwv1.PathMatchPathPrefix, "/api").Path, Method: &get}),
			[]string{"c/0", "d/0", "e/0", "b/0", "a/0"}},
		{"method before more headers", httpRoute("app", "f", 60, gwv1.HTTPRouteMatch{
			Path:    path(gwv1.PathMatchPathPrefix, "/api").Path,
			Headers: []gwv1.HTTPHeaderMatch{{Name: "a", Value: "1"}, {Name: "b", Value: "2"}},
		}), []string{"c/0", "d/0", "e/0", "f/0", "b/0", "a/0"}},
		{"headers before query params", httpRoute("app", "g", 70,
			gwv1.HTTPRouteMatch{Path: path(gwv1.PathMatchPathPrefix, "/api").Path, Headers: []gwv1.HTTPHeaderMatch{{Name: "a", Value: "1"}}},
			gwv1.HTTPRouteMatch{Path: path(gwv1.PathMatchPathPrefix, "/api").Path, QueryParams: []gwv1.HTTPQueryParamMatch{{Name: "q", Value: "1"}}},
		), []string{"c/0", "d/0", "e/0", "f/0", "g/0", "g/1", "b/0", "a/0"}},
		{"older route wins a tie", httpRoute("app", "h", 5, path(gwv1.PathMatchPathPrefix, "/api")),
			[]string{"c/0", "d/0", "e/0", "f/0", "g/0", "g/1", "h/0", "b/0", "a/0"}},
		{"same age: namespace/name order", httpRoute("aaa", "z", 5, path(gwv1.PathMatchPathPrefix, "/api")),
			[]string{"c/0", "d/0", "e/0", "f/0", "g/0", "g/1", "z/0", "h/0", "b/0", "a/0"}},
		{"same route: rule order", httpRoute("app", "i", 1, path(gwv1.PathMatchPathPrefix, "/q"), path(gwv1.PathMatchPathPrefix, "/q")),
			[]string{"c/0", "d/0", "e/0", "f/0", "g/0", "g/1", "z/0", "h/0", "b/0", "i/0", "i/1", "a/0"}},
	} {
		res.HTTPRoutes = append(res.HTTPRoutes, step.add)
		out := Translate(res, Options{})
		var got []string
		for _, r := range out.Groups[0].HTTP[0].Routes {
			// httproute/<ns>/<name>/rule/<i>/match/<j>/host/
			p := strings.Split(r.Name, "/")
			got = append(got, p[2]+"/"+p[4])
		}
		if d := cmp.Diff(step.order, got); d != "" {
			t.Fatalf("step %q: order (-want +got):\n%s", step.name, d)
		}
	}
}

func TestGRPCPrecedence(t *testing.T) {
	res := base()
	svc, method := "pkg.Svc", "Get"
	exact := gwv1.GRPCMethodMatchExact
	rule := func(m gwv1.GRPCRouteMatch) gwv1.GRPCRouteRule {
		return gwv1.GRPCRouteRule{Matches: []gwv1.GRPCRouteMatch{m}, BackendRefs: []gwv1.GRPCBackendRef{{BackendRef: backendRef("", "web", 8080).BackendRef}}}
	}
	r := gwv1.GRPCRoute{}
	r.Namespace, r.Name = "app", "g"
	r.Spec.ParentRefs = []gwv1.ParentReference{{Name: "gw", Namespace: ptr(gwv1.Namespace("infra"))}}
	r.Spec.Rules = []gwv1.GRPCRouteRule{
		rule(gwv1.GRPCRouteMatch{}),
		rule(gwv1.GRPCRouteMatch{Method: &gwv1.GRPCMethodMatch{Type: &exact, Method: &method}}),
		rule(gwv1.GRPCRouteMatch{Method: &gwv1.GRPCMethodMatch{Type: &exact, Service: &svc}}),
		rule(gwv1.GRPCRouteMatch{Method: &gwv1.GRPCMethodMatch{Type: &exact, Service: &svc, Method: &method}}),
		rule(gwv1.GRPCRouteMatch{Method: &gwv1.GRPCMethodMatch{Type: &exact, Service: &svc}, Headers: []gwv1.GRPCHeaderMatch{{Name: "h", Value: "v"}}}),
	}
	res.GRPCRoutes = append(res.GRPCRoutes, r)
	out := Translate(res, Options{})
	var got []string
	for _, r := range out.Groups[0].HTTP[0].Routes {
		got = append(got, strings.Split(r.Name, "/")[4]+" "+string(r.Path.Type)+" "+r.Path.Value)
	}
	want := []string{"3 Exact /pkg.Svc/Get", "4 Prefix /pkg.Svc", "2 Prefix /pkg.Svc", "1 Regex /[^/]+/Get", "0 Prefix /"}
	if d := cmp.Diff(want, got); d != "" {
		t.Fatalf("order (-want +got):\n%s", d)
	}
}
