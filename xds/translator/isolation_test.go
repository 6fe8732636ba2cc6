package translator

import (
	"net"
	"strings"
	"testing"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/berthnet/berth/xds/ir"
)

// envoyVirtualHost picks the virtual host Envoy would for a Host header,
// by Envoy's documented search order, written here apart from the
// translator: exact domains, then suffix wildcards ("*.foo.com", longest
// suffix first; the wildcard never matches the empty string), then prefix
// wildcards ("foo.*", longest first), then "*". Hosts compare without
// case, and without the port when the configuration says so.
func envoyVirtualHost(t *testing.T, rc *routev3.RouteConfiguration, host string) *routev3.VirtualHost {
	t.Helper()
	host = strings.ToLower(host)
	if rc.IgnorePortInHostMatching {
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
	}
	var exact, suffix, prefix, any *routev3.VirtualHost
	var suffixLen, prefixLen int
	for _, vh := range rc.VirtualHosts {
		for _, d := range vh.Domains {
			d = strings.ToLower(d)
			switch {
			case d == "*":
				any = vh
			case strings.HasPrefix(d, "*"):
				if s := d[1:]; len(host) > len(s) && strings.HasSuffix(host, s) && len(s) > suffixLen {
					suffix, suffixLen = vh, len(s)
				}
			case strings.HasSuffix(d, "*"):
				if p := d[:len(d)-1]; len(host) > len(p) && strings.HasPrefix(host, p) && len(p) > prefixLen {
					prefix, prefixLen = vh, len(p)
				}
			case d == host:
				exact = vh
			}
		}
	}
	for _, vh := range []*routev3.VirtualHost{exact, suffix, prefix, any} {
		if vh != nil {
			return vh
		}
	}
	return nil
}

// envoyRoute is the name of the first route of vh whose path match takes
// path ("404" when none does, or when there is no virtual host). Only the
// path matches these tests use are known.
func envoyRoute(t *testing.T, vh *routev3.VirtualHost, path string) string {
	t.Helper()
	if vh == nil {
		return "404"
	}
	for _, r := range vh.Routes {
		m := r.Match
		if len(m.Headers) > 0 || len(m.QueryParameters) > 0 {
			t.Fatalf("route %s: header or query matches are not simulated", r.Name)
		}
		var ok bool
		switch p := m.PathSpecifier.(type) {
		case *routev3.RouteMatch_Prefix:
			ok = strings.HasPrefix(path, p.Prefix)
		case *routev3.RouteMatch_Path:
			ok = path == p.Path
		case *routev3.RouteMatch_PathSeparatedPrefix:
			ok = path == p.PathSeparatedPrefix || strings.HasPrefix(path, p.PathSeparatedPrefix+"/")
		default:
			t.Fatalf("route %s: path match %T is not simulated", r.Name, p)
		}
		if ok {
			return r.Name
		}
	}
	return "404"
}

// TestListenerIsolation: listeners sharing a plain HTTP port, and a table
// of requests with the route each must reach, written by hand from the
// Gateway API (a request belongs to the most specific listener whose
// hostname matches it: exact, then the longest wildcard, then the listener
// without a hostname; only that listener's routes may answer it), run
// through Envoy's virtual host and route matching.
func TestListenerIsolation(t *testing.T) {
	prefix := func(p string) *ir.StringMatch { return &ir.StringMatch{Type: ir.Prefix, Value: p} }
	route := func(name, host, path string) *ir.HTTPRoute {
		return &ir.HTTPRoute{Name: name, Hostname: host, Path: prefix(path), Backends: to("t/a/80")}
	}
	g := httpGroup()
	g.HTTP = []*ir.HTTPListener{
		{Name: "t/t/any", Port: 80, Routes: []*ir.HTTPRoute{
			route("any/b", "b.example.com", "/"), // b.example.com is the wildcard listener's
			route("any/org", "c.org", "/"),
			route("any/all", "", "/"),
		}},
		{Name: "t/t/a", Port: 80, Hostname: "a.example.com", Routes: []*ir.HTTPRoute{
			route("a/a", "a.example.com", "/a"),
		}},
		{Name: "t/t/wild", Port: 80, Hostname: "*.example.com", Routes: []*ir.HTTPRoute{
			route("wild/b", "b.example.com", "/"),
			route("wild/x.apps", "x.apps.example.com", "/"), // the apps listener's
			route("wild/w", "*.example.com", "/w"),
		}},
		{Name: "t/t/apps", Port: 80, Hostname: "*.apps.example.com", Routes: []*ir.HTTPRoute{
			route("apps/all", "*.apps.example.com", "/"),
		}},
		// A wildcard listener whose routes all name one host.
		{Name: "t/t/net", Port: 80, Hostname: "*.example.net", Routes: []*ir.HTTPRoute{
			route("net/n", "n.example.net", "/"),
		}},
	}
	res := mustTranslate(t, g)
	checkResources(t, g, res)
	rc := res[resourcev3.RouteType][0].(*routev3.RouteConfiguration)
	for _, tc := range []struct{ host, path, want string }{
		{"a.example.com", "/a", "a/a"},
		{"a.example.com", "/b", "404"}, // the exact listener has no route for it
		{"A.Example.com:8080", "/a/x", "a/a"},
		{"b.example.com", "/", "wild/b"},
		{"b.example.com:80", "/w", "wild/b"},
		{"c.example.com", "/w/1", "wild/w"},
		{"c.example.com", "/x", "404"}, // the wildcard listener's, which has no route for it
		{"d.c.example.com", "/x", "404"},
		{"x.apps.example.com", "/", "apps/all"},
		{"y.apps.example.com", "/w", "apps/all"},
		{"example.com", "/", "any/all"}, // "*.example.com" needs a label before it
		{"c.org", "/", "any/org"},
		{"d.org", "/", "any/all"},
		{"10.0.0.1:80", "/", "any/all"},
		{"n.example.net", "/", "net/n"},
		{"m.example.net", "/", "404"}, // the *.example.net listener's, not the catch-all's
		{"example.net", "/", "any/all"},
	} {
		if got := envoyRoute(t, envoyVirtualHost(t, rc, tc.host), tc.path); got != tc.want {
			t.Errorf("%s%s: answered by %s, want %s", tc.host, tc.path, got, tc.want)
		}
	}
}

// envoyFilterChain picks the filter chain Envoy would for a TLS SNI, by
// its documented server_names rule, written apart from the translator:
// the exact name, then wildcards from the longest suffix ("*.a.b.com",
// then "*.b.com", then "*.com"), then a chain without server_names.
func envoyFilterChain(t *testing.T, l *listenerv3.Listener, sni string) string {
	t.Helper()
	find := func(name string) string {
		for _, fc := range l.FilterChains {
			for _, s := range fc.GetFilterChainMatch().GetServerNames() {
				if s == name {
					return fc.Name
				}
			}
		}
		return ""
	}
	if c := find(sni); c != "" {
		return c
	}
	for rest := sni; strings.Contains(rest, "."); {
		rest = rest[strings.Index(rest, ".")+1:]
		if c := find("*." + rest); c != "" {
			return c
		}
	}
	for _, fc := range l.FilterChains {
		if len(fc.GetFilterChainMatch().GetServerNames()) == 0 {
			return fc.Name
		}
	}
	return "none"
}

// TestHTTPSListenerBySNI: HTTPS listeners sharing a port are filter
// chains, and a TLS client lands on the most specific listener's (hand-
// written answers, as TestListenerIsolation's).
func TestHTTPSListenerBySNI(t *testing.T) {
	cert := &ir.Certificate{Name: "t/c", Chain: []byte("chain"), Key: []byte("key")}
	listener := func(name, host string) *ir.HTTPListener {
		return &ir.HTTPListener{Name: name, Port: 443, Hostname: host, TLS: &ir.TLS{Certificates: []*ir.Certificate{cert}},
			Routes: []*ir.HTTPRoute{{Name: name + "/r", Hostname: host, Backends: to("t/a/80")}}}
	}
	g := httpGroup()
	g.HTTP = []*ir.HTTPListener{
		listener("t/t/any", ""), listener("t/t/a", "a.example.com"),
		listener("t/t/wild", "*.example.com"), listener("t/t/apps", "*.apps.example.com"),
	}
	res := mustTranslate(t, g)
	checkResources(t, g, res)
	l := res[resourcev3.ListenerType][0].(*listenerv3.Listener)
	for _, tc := range []struct{ sni, want string }{
		{"a.example.com", "t/t/a"},
		{"b.example.com", "t/t/wild"},
		{"x.b.example.com", "t/t/wild"},
		{"x.apps.example.com", "t/t/apps"},
		{"apps.example.com", "t/t/wild"},
		{"example.com", "t/t/any"},
		{"other.org", "t/t/any"},
	} {
		if got := envoyFilterChain(t, l, tc.sni); got != tc.want {
			t.Errorf("SNI %s: filter chain %s, want %s", tc.sni, got, tc.want)
		}
	}
}
