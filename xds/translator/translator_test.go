package translator

import (
	"bytes"
	"fmt"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/google/go-cmp/cmp"
	"sigs.k8s.io/yaml"

	"github.com/berthnet/berth/xds/ir"
)

func goldenGroups(t *testing.T) map[string]*goldenInput {
	t.Helper()
	inputs, err := filepath.Glob(filepath.Join("testdata", "*.ir.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*goldenInput{}
	for _, in := range inputs {
		out[strings.TrimSuffix(filepath.Base(in), ".ir.yaml")] = readInput(t, in)
	}
	return out
}

func mustTranslate(t testing.TB, g *ir.Group) Resources {
	t.Helper()
	res, err := Translate(g)
	if err != nil {
		t.Fatalf("Translate: %v", err)
	}
	return res
}

func TestGoldenInputsMeanWhatTheySay(t *testing.T) {
	for name, in := range goldenGroups(t) {
		t.Run(name, func(t *testing.T) {
			checkResources(t, &in.Group, mustTranslate(t, &in.Group))
		})
	}
}

// TestDeterministic: the same IR gives byte-identical resources, whatever
// the order of the group's listeners and clusters, and Translate leaves
// the IR as it found it.
func TestDeterministic(t *testing.T) {
	for name, in := range goldenGroups(t) {
		t.Run(name, func(t *testing.T) {
			before, err := yaml.Marshal(in)
			if err != nil {
				t.Fatal(err)
			}
			first := marshalAll(t, mustTranslate(t, &in.Group))
			again := marshalAll(t, mustTranslate(t, &in.Group))
			shuffled := in.Group
			shuffled.HTTP = slices.Clone(in.HTTP)
			slices.Reverse(shuffled.HTTP)
			shuffled.Clusters = slices.Clone(in.Clusters)
			slices.Reverse(shuffled.Clusters)
			reversed := marshalAll(t, mustTranslate(t, &shuffled))
			for k, b := range first {
				if !bytes.Equal(b, again[k]) {
					t.Errorf("%s: differs between two translations", k)
				}
				if !bytes.Equal(b, reversed[k]) {
					t.Errorf("%s: differs when listeners and clusters come in another order", k)
				}
			}
			if len(again) != len(first) || len(reversed) != len(first) {
				t.Errorf("resource counts differ: %d, %d, %d", len(first), len(again), len(reversed))
			}
			after, err := yaml.Marshal(in)
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(string(before), string(after)); d != "" {
				t.Errorf("Translate modified its input (-before +after):\n%s", d)
			}
		})
	}
}

func httpGroup(routes ...*ir.HTTPRoute) *ir.Group {
	return &ir.Group{
		Name: "gateway/t/t",
		HTTP: []*ir.HTTPListener{{Name: "t/t/http", Port: 80, Routes: routes}},
		Clusters: []*ir.Cluster{
			{Name: "t/a/80", Namespace: "t", Service: "a", Port: 80, Protocol: ir.HTTP},
			{Name: "t/b/80", Namespace: "t", Service: "b", Port: 80, Protocol: ir.HTTP},
			{Name: "t/c/80", Namespace: "t", Service: "c", Port: 80, Protocol: ir.HTTP},
		},
	}
}

func to(cluster string) []*ir.Backend { return []*ir.Backend{{Cluster: cluster, Weight: 1}} }

// TestRouteOrder: Envoy takes the first route that matches, so the order
// of the IR (Gateway API precedence) must survive, even where names sort
// otherwise.
func TestRouteOrder(t *testing.T) {
	var routes []*ir.HTTPRoute
	var want []string
	for i := range 40 {
		n := fmt.Sprintf("route-%02d", (i*17)%40) // a permutation of 0..39
		want = append(want, n)
		routes = append(routes, &ir.HTTPRoute{
			Name: n, Hostname: "a.example.com",
			Path:     &ir.StringMatch{Type: ir.Prefix, Value: fmt.Sprintf("/p%d", 40-i)},
			Backends: to("t/a/80"),
		})
	}
	g := httpGroup(routes...)
	res := mustTranslate(t, g)
	checkResources(t, g, res)
	rc := res[resourcev3.RouteType][0].(*routev3.RouteConfiguration)
	var got []string
	for _, r := range rc.VirtualHosts[0].Routes {
		got = append(got, r.Name)
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("route order (-IR +Envoy):\n%s", d)
	}
}

// TestWeights: the split keeps every weight, merges a cluster named twice,
// drops weight 0, and sends exactly the unresolved share to a cluster
// that does not exist with 500 as the answer for a missing cluster.
func TestWeights(t *testing.T) {
	g := httpGroup(
		&ir.HTTPRoute{Name: "split", Backends: []*ir.Backend{
			{Cluster: "t/a/80", Weight: 60}, {Cluster: "", Weight: 7}, {Cluster: "t/b/80", Weight: 30},
			{Cluster: "", Weight: 3}, {Cluster: "t/a/80", Weight: 10}, {Cluster: "t/c/80", Weight: 0},
		}},
		&ir.HTTPRoute{Name: "one-left", Path: &ir.StringMatch{Type: ir.Exact, Value: "/x"}, Backends: []*ir.Backend{
			{Cluster: "t/a/80", Weight: 5}, {Cluster: "t/b/80", Weight: 0},
		}},
		&ir.HTTPRoute{Name: "none-resolved", Path: &ir.StringMatch{Type: ir.Exact, Value: "/y"}, Backends: []*ir.Backend{
			{Cluster: "", Weight: 5}, {Cluster: "t/b/80", Weight: 0},
		}},
	)
	at := checkResources(t, g, mustTranslate(t, g))

	split := at["split"].route.GetRoute()
	got := map[string]uint32{}
	var total uint32
	for _, w := range split.GetWeightedClusters().GetClusters() {
		got[w.Name] += w.Weight.GetValue()
		total += w.Weight.GetValue()
	}
	want := map[string]uint32{"t/a/80": 70, "t/b/80": 30, invalidBackendCluster: 10}
	if d := cmp.Diff(want, got); d != "" || total != 110 {
		t.Errorf("weights (-want +got), total %d want 110:\n%s", total, d)
	}
	if split.ClusterNotFoundResponseCode != routev3.RouteAction_INTERNAL_SERVER_ERROR {
		t.Errorf("unresolved share answers %v, want 500", split.ClusterNotFoundResponseCode)
	}

	if c := at["one-left"].route.GetRoute().GetCluster(); c != "t/a/80" {
		t.Errorf("one backend with weight: cluster %q, want t/a/80", c)
	}
	if ra := at["one-left"].route.GetRoute(); ra.ClusterNotFoundResponseCode != routev3.RouteAction_SERVICE_UNAVAILABLE {
		t.Errorf("all resolved: missing-cluster answer %v, want Envoy's default", ra.ClusterNotFoundResponseCode)
	}
	if d := at["none-resolved"].route.GetDirectResponse(); d.GetStatus() != 500 {
		t.Errorf("no resolved backend: %v, want a 500 direct response", at["none-resolved"].route.Action)
	}
}

// TestRedirectCodes: every status the IR allows keeps its meaning.
func TestRedirectCodes(t *testing.T) {
	for code, want := range map[int]routev3.RedirectAction_RedirectResponseCode{
		301: routev3.RedirectAction_MOVED_PERMANENTLY,
		302: routev3.RedirectAction_FOUND,
		303: routev3.RedirectAction_SEE_OTHER,
		307: routev3.RedirectAction_TEMPORARY_REDIRECT,
		308: routev3.RedirectAction_PERMANENT_REDIRECT,
	} {
		g := httpGroup(&ir.HTTPRoute{Name: "r", Redirect: &ir.Redirect{StatusCode: code}})
		at := checkResources(t, g, mustTranslate(t, g))
		if got := at["r"].route.GetRedirect().GetResponseCode(); got != want {
			t.Errorf("redirect %d: %v, want %v", code, got, want)
		}
	}
}

// envoyPath is the path Envoy sends upstream (or redirects to) after a
// route's prefix_rewrite or regex_rewrite, as Envoy documents them: the
// first replaces the prefix the route matched, the second is RE2's
// GlobalReplace (Go's ReplaceAllString, with \1 for $1).
func envoyPath(m *routev3.RouteMatch, prefixRewrite string, re *regexp.Regexp, sub, path string) string {
	switch {
	case prefixRewrite != "":
		matched := m.GetPrefix()
		if p := m.GetPathSeparatedPrefix(); p != "" {
			matched = p
		}
		return prefixRewrite + strings.TrimPrefix(path, matched)
	case re != nil:
		return re.ReplaceAllString(path, strings.ReplaceAll(sub, `\\`, `\`))
	}
	return path
}

// fullMatch is Envoy's safe_regex match on a path: the whole path.
func fullMatch(re, path string) bool {
	return regexp.MustCompile("^(?:" + re + ")$").MatchString(path)
}

// TestPrefixSemantics: a Gateway API PathPrefix matches whole segments,
// with or without a trailing slash in the rule, also where Envoy's
// path_separated_prefix cannot express it; ReplacePrefixMatch replaces
// that prefix without doubling or losing slashes.
func TestPrefixSemantics(t *testing.T) {
	matches := func(m *routev3.RouteMatch, path string) bool {
		switch {
		case m.GetPathSeparatedPrefix() != "":
			p := m.GetPathSeparatedPrefix()
			return path == p || strings.HasPrefix(path, p+"/")
		case m.GetPrefix() != "":
			return strings.HasPrefix(path, m.GetPrefix())
		case m.GetSafeRegex() != nil:
			return fullMatch(m.GetSafeRegex().Regex, path)
		}
		t.Fatalf("unexpected match %v", m)
		return false
	}
	for _, tc := range []struct {
		prefix, repl string
		// path -> rewritten path, or "" when the route must not match.
		paths map[string]string
	}{
		{"/api", "/v2", map[string]string{"/api": "/v2", "/api/": "/v2/", "/api/x/y": "/v2/x/y", "/apix": "", "/ap": ""}},
		{"/api/", "/v2/", map[string]string{"/api": "/v2", "/api/x": "/v2/x", "/apix": ""}},
		{"/api", "/", map[string]string{"/api": "/", "/api/": "/", "/api/x": "/x", "/apix": ""}},
		{"/", "/v2", map[string]string{"/x": "/v2/x", "/x/y": "/v2/x/y"}},
		{"/odd?x", "/even", map[string]string{"/odd?x": "/even", "/odd?x/y": "/even/y", "/odd?xy": ""}},
		{"/odd#x", "/", map[string]string{"/odd#x": "/", "/odd#x/y": "/y", "/odd#xy": ""}},
	} {
		repl := tc.repl
		g := httpGroup(&ir.HTTPRoute{
			Name:     "r",
			Path:     &ir.StringMatch{Type: ir.Prefix, Value: tc.prefix},
			Rewrite:  &ir.URLRewrite{Path: &ir.PathModifier{PrefixMatch: &repl}},
			Backends: to("t/a/80"),
		})
		er := checkResources(t, g, mustTranslate(t, g))["r"].route
		ra := er.GetRoute()
		var re *regexp.Regexp
		if rr := ra.GetRegexRewrite(); rr != nil {
			re = regexp.MustCompile(rr.Pattern.Regex)
		}
		for path, want := range tc.paths {
			if got := matches(er.Match, path); got != (want != "") {
				t.Errorf("prefix %s: path %s matches %v, want %v", tc.prefix, path, got, want != "")
				continue
			}
			if want == "" {
				continue
			}
			if got := envoyPath(er.Match, ra.PrefixRewrite, re, ra.GetRegexRewrite().GetSubstitution(), path); got != want {
				t.Errorf("prefix %s -> %s: %s becomes %s, want %s", tc.prefix, tc.repl, path, got, want)
			}
		}
	}
}

// TestTranslateErrors: what cannot be served is refused with the names to
// fix, never served half.
func TestTranslateErrors(t *testing.T) {
	cert := func(name, chain string) *ir.Certificate {
		return &ir.Certificate{Name: name, Chain: []byte(chain), Key: []byte("key")}
	}
	tls := func(name string, port uint32, host string, certs ...*ir.Certificate) *ir.HTTPListener {
		return &ir.HTTPListener{Name: name, Port: port, Hostname: host, TLS: &ir.TLS{Certificates: certs}}
	}
	for _, tc := range []struct {
		name  string
		edit  func(g *ir.Group)
		wants []string
	}{
		{"invalid IR", func(g *ir.Group) { g.HTTP[0].Routes[0].Backends = to("t/nope/80") }, []string{"invalid IR", "t/nope/80"}},
		{"HTTP and HTTPS on one port", func(g *ir.Group) {
			g.HTTP = append(g.HTTP, tls("t/t/https", 80, "", cert("t/c", "x")))
		}, []string{"port 80", "t/t/http", "t/t/https"}},
		{"two HTTPS listeners for one hostname", func(g *ir.Group) {
			g.HTTP = append(g.HTTP, tls("t/t/a", 443, "a.example.com", cert("t/c", "x")),
				tls("t/t/b", 443, "a.example.com", cert("t/c", "x")))
		}, []string{"port 443", "t/t/a", "t/t/b", "a.example.com"}},
		{"one secret name, two contents", func(g *ir.Group) {
			g.HTTP = append(g.HTTP, tls("t/t/a", 443, "a.example.com", cert("t/c", "x")),
				tls("t/t/b", 443, "b.example.com", cert("t/c", "y")))
		}, []string{"certificate t/c"}},
		{"reserved cluster name", func(g *ir.Group) {
			g.Clusters = append(g.Clusters, &ir.Cluster{Name: invalidBackendCluster, Port: 1, Protocol: ir.HTTP})
		}, []string{invalidBackendCluster, "reserved"}},
		{"an HTTPS listener named like a port's route configuration", func(g *ir.Group) {
			g.HTTP = append(g.HTTP, tls("http-80", 443, "", cert("t/c", "x")))
		}, []string{"two of route configuration \"http-80\""}},
		{"header value Envoy refuses", func(g *ir.Group) {
			g.HTTP[0].Routes[0].RequestHeaders = &ir.HeaderModifier{Add: []ir.Header{{Name: "x-a", Value: "a\r\nb"}}}
		}, []string{"invalid IR", "x-a"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := httpGroup(&ir.HTTPRoute{Name: "r", Backends: to("t/a/80")})
			tc.edit(g)
			res, err := Translate(g)
			if err == nil {
				t.Fatalf("no error; got %d types of resources", len(res))
			}
			if res != nil {
				t.Errorf("resources returned with an error")
			}
			for _, w := range tc.wants {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
}

// recorder keeps the errors a check reports instead of failing the test.
type recorder struct {
	testing.TB
	errs []string
}

func (r *recorder) Helper() {}
func (r *recorder) Errorf(format string, args ...any) {
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

// TestChecksCatchBrokenResources: checkResources, which the fuzz target
// relies on, does find a dangling reference of each kind.
func TestChecksCatchBrokenResources(t *testing.T) {
	for _, tc := range []struct {
		name, group string
		edit        func(res Resources)
		want        string
	}{
		{"route configuration missing", "tls", func(res Resources) {
			res[resourcev3.RouteType] = res[resourcev3.RouteType][1:]
		}, "not consistent"},
		{"secret missing", "tls", func(res Resources) {
			res[resourcev3.SecretType] = res[resourcev3.SecretType][1:]
		}, "does not exist"},
		{"route to a cluster that is not there", "tls", func(res Resources) {
			res[resourcev3.ClusterType] = res[resourcev3.ClusterType][1:]
		}, "names cluster"},
		{"route order changed", "matches", func(res Resources) {
			for _, r := range res[resourcev3.RouteType] {
				for _, vh := range r.(*routev3.RouteConfiguration).VirtualHosts {
					slices.Reverse(vh.Routes)
				}
			}
		}, "comes before"},
		{"a route added", "tls", func(res Resources) {
			rc := res[resourcev3.RouteType][0].(*routev3.RouteConfiguration)
			rc.VirtualHosts = append(rc.VirtualHosts, &routev3.VirtualHost{Name: "x", Domains: []string{"x"},
				Routes: []*routev3.Route{{Name: "extra", Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
					Action: &routev3.Route_DirectResponse{DirectResponse: &routev3.DirectResponseAction{Status: 200}}}}})
		}, "IR routes became"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := goldenGroups(t)[tc.group]
			res := mustTranslate(t, &in.Group)
			tc.edit(res)
			rec := &recorder{TB: t}
			checkResources(rec, &in.Group, res)
			if !slices.ContainsFunc(rec.errs, func(e string) bool { return strings.Contains(e, tc.want) }) {
				t.Errorf("no error saying %q; got %q", tc.want, rec.errs)
			}
		})
	}
}

// TestGRPCUnresolved: a gRPC route answers requests for unresolved
// backends with a 503 (grpc-status UNAVAILABLE), an HTTP route with a 500.
func TestGRPCUnresolved(t *testing.T) {
	g := httpGroup(
		&ir.HTTPRoute{Name: "grpc-split", GRPC: true, Backends: []*ir.Backend{{Cluster: "t/a/80", Weight: 1}, {Weight: 1}}},
		&ir.HTTPRoute{Name: "grpc-none", GRPC: true, Path: &ir.StringMatch{Type: ir.Exact, Value: "/s/M"}, Backends: []*ir.Backend{{Weight: 1}}},
		&ir.HTTPRoute{Name: "http-none", Path: &ir.StringMatch{Type: ir.Exact, Value: "/x"}, Backends: []*ir.Backend{{Weight: 1}}},
	)
	at := checkResources(t, g, mustTranslate(t, g))
	if c := at["grpc-split"].route.GetRoute().ClusterNotFoundResponseCode; c != routev3.RouteAction_SERVICE_UNAVAILABLE {
		t.Errorf("gRPC unresolved share answers %v, want SERVICE_UNAVAILABLE", c)
	}
	if s := at["grpc-none"].route.GetDirectResponse().GetStatus(); s != 503 {
		t.Errorf("gRPC, no resolved backend: status %d, want 503", s)
	}
	if s := at["http-none"].route.GetDirectResponse().GetStatus(); s != 500 {
		t.Errorf("HTTP, no resolved backend: status %d, want 500", s)
	}
}

// TestRouteOnTwoListenersOnce: a route that two listeners of a port give
// the same hostname is served once, where the more specific listener put
// it; the second listener's other routes for that hostname are not served
// (listener isolation: the host is the more specific listener's).
func TestRouteOnTwoListenersOnce(t *testing.T) {
	route := func(name, host string) *ir.HTTPRoute {
		return &ir.HTTPRoute{Name: name, Hostname: host, Backends: to("t/a/80")}
	}
	g := httpGroup()
	g.HTTP = []*ir.HTTPListener{
		{Name: "t/t/apps", Port: 80, Hostname: "*.apps.example.com", Routes: []*ir.HTTPRoute{route("r/x", "x.apps.example.com")}},
		{Name: "t/t/wide", Port: 80, Hostname: "*.example.com", Routes: []*ir.HTTPRoute{
			route("other/x", "x.apps.example.com"), route("r/x", "x.apps.example.com")}},
	}
	res := mustTranslate(t, g)
	checkResources(t, g, res)
	rc := res[resourcev3.RouteType][0].(*routev3.RouteConfiguration)
	var got []string
	for _, vh := range rc.VirtualHosts {
		if vh.Name == "x.apps.example.com" {
			for _, r := range vh.Routes {
				got = append(got, r.Name)
			}
		}
	}
	// x.apps.example.com is the more specific listener's: the wider
	// listener's own route for it ("other/x") never answers.
	if d := cmp.Diff([]string{"r/x"}, got); d != "" {
		t.Errorf("routes of x.apps.example.com (-want +got):\n%s", d)
	}
}

// TestTimeouts: unset leaves Envoy's default (or the backend timeout),
// a value is kept, and a disabled timeout is an explicit 0s, which Envoy
// reads as no timeout at all.
func TestTimeouts(t *testing.T) {
	exact := func(p string) *ir.StringMatch { return &ir.StringMatch{Type: ir.Exact, Value: p} }
	g := httpGroup(
		&ir.HTTPRoute{Name: "default", Path: exact("/a"), Backends: to("t/a/80")},
		&ir.HTTPRoute{Name: "set", Path: exact("/b"), Timeout: 30 * time.Second, Backends: to("t/a/80")},
		&ir.HTTPRoute{Name: "backend-only", Path: exact("/c"), BackendTimeout: 5 * time.Second, Backends: to("t/a/80")},
		&ir.HTTPRoute{Name: "disabled", Path: exact("/d"), TimeoutDisabled: true, BackendTimeout: 5 * time.Second, Backends: to("t/a/80")},
	)
	at := checkResources(t, g, mustTranslate(t, g))
	for name, want := range map[string]*time.Duration{"default": nil, "set": ptrTo(30 * time.Second), "backend-only": ptrTo(5 * time.Second), "disabled": ptrTo(time.Duration(0))} {
		got := at[name].route.GetRoute().GetTimeout()
		switch {
		case want == nil && got != nil, want != nil && got == nil:
			t.Errorf("%s: timeout %v, want %v", name, got, want)
		case want != nil && got.AsDuration() != *want:
			t.Errorf("%s: timeout %v, want %v", name, got.AsDuration(), *want)
		}
	}
	if p := at["disabled"].route.GetRoute().GetRetryPolicy().GetPerTryTimeout().AsDuration(); p != 5*time.Second {
		t.Errorf("disabled: per-try timeout %v, want the backend timeout 5s", p)
	}
}

func ptrTo[T any](v T) *T { return &v }
