package translator

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"

	"github.com/berthnet/berth/xds/ir"
)

// This file checks what a set of resources means, independently of how
// Translate built it: the checks an Envoy would make when it loads them,
// and the IR's promises kept.

// routeAt is where an IR route ended up.
type routeAt struct {
	routeConfig, vhost string
	index              int
	route              *routev3.Route
}

// checkResources fails t unless res (with the endpoints of g) is what
// Envoy can load and what g means:
//   - every resource, and every typed config packed in a listener or
//     cluster, passes ValidateAll;
//   - the snapshot is consistent (go-control-plane: every RDS and EDS name
//     referred to exists, and nothing else does);
//   - every SDS secret a filter chain names exists, and every secret is
//     named by one;
//   - no route changes a header Envoy refuses to (Host, pseudo-headers);
//   - every cluster a route sends to or mirrors to exists, except the
//     reserved unresolved-backend cluster, which only a route answering
//     500 for missing clusters may name;
//   - each IR route is exactly one Envoy route, in the virtual host of its
//     hostname, and the routes of one listener keep their IR order; except
//     a route whose hostname a more specific listener of its port covers,
//     which is not served at all (those requests are that listener's).
//
// It returns where each IR route went, by name.
func checkResources(t testing.TB, g *ir.Group, res Resources) map[string]routeAt {
	t.Helper()
	errf := func(format string, args ...any) {
		t.Helper()
		t.Errorf("group %s: %s", g.Name, fmt.Sprintf(format, args...))
	}
	all := map[resourcev3.Type][]types.Resource{}
	for typ, list := range res {
		all[typ] = list
		for _, r := range list {
			if err := validate(r); err != nil {
				errf("%s %s: %v", typeName(typ), name(r), err)
			}
		}
	}
	all[resourcev3.EndpointType] = Endpoints(g, nil)
	snap, err := cachev3.NewSnapshot("1", all)
	if err != nil {
		t.Fatalf("NewSnapshot: %v", err)
	}
	if err := snap.Consistent(); err != nil {
		errf("snapshot not consistent: %v", err)
	}

	secrets := map[string]bool{}
	for _, r := range res[resourcev3.SecretType] {
		secrets[name(r)] = false
	}
	for _, r := range res[resourcev3.ListenerType] {
		l := r.(*listenerv3.Listener)
		for _, fc := range l.FilterChains {
			for _, f := range fc.Filters {
				hcm := &hcmv3.HttpConnectionManager{}
				if err := f.GetTypedConfig().UnmarshalTo(hcm); err != nil {
					errf("listener %s: filter %s: %v", l.Name, f.Name, err)
				}
				if err := hcm.ValidateAll(); err != nil {
					errf("listener %s: connection manager: %v", l.Name, err)
				}
			}
			if ts := fc.TransportSocket; ts != nil {
				tc := &tlsv3.DownstreamTlsContext{}
				if err := ts.GetTypedConfig().UnmarshalTo(tc); err != nil {
					errf("listener %s: transport socket: %v", l.Name, err)
				}
				if err := tc.ValidateAll(); err != nil {
					errf("listener %s: TLS context: %v", l.Name, err)
				}
				for _, s := range tc.GetCommonTlsContext().GetTlsCertificateSdsSecretConfigs() {
					if _, ok := secrets[s.Name]; !ok {
						errf("listener %s chain %s: SDS secret %q does not exist", l.Name, fc.Name, s.Name)
					}
					secrets[s.Name] = true
				}
			}
		}
	}
	for s, used := range secrets {
		if !used {
			errf("secret %s is named by no filter chain", s)
		}
	}

	clusters := map[string]bool{}
	for _, r := range res[resourcev3.ClusterType] {
		c := r.(*clusterv3.Cluster)
		clusters[c.Name] = true
		for k, a := range c.TypedExtensionProtocolOptions {
			m, err := a.UnmarshalNew()
			if err != nil {
				errf("cluster %s: %s: %v", c.Name, k, err)
				continue
			}
			if err := validate(m); err != nil {
				errf("cluster %s: %s: %v", c.Name, k, err)
			}
		}
	}
	at := map[string]routeAt{}
	for _, r := range res[resourcev3.RouteType] {
		rc := r.(*routev3.RouteConfiguration)
		for _, vh := range rc.VirtualHosts {
			for i, er := range vh.Routes {
				if _, dup := at[rc.Name+"\x00"+er.Name]; dup {
					errf("route configuration %s: route %s twice", rc.Name, er.Name)
				}
				at[rc.Name+"\x00"+er.Name] = routeAt{routeConfig: rc.Name, vhost: vh.Name, index: i, route: er}
				var changed []string
				for _, h := range append(slices.Clone(er.RequestHeadersToAdd), er.ResponseHeadersToAdd...) {
					changed = append(changed, h.Header.Key)
				}
				changed = append(append(changed, er.RequestHeadersToRemove...), er.ResponseHeadersToRemove...)
				for _, h := range changed {
					if strings.HasPrefix(h, ":") || strings.EqualFold(h, "host") {
						errf("route %s changes header %s, which Envoy refuses", er.Name, h)
					}
				}
				ra := er.GetRoute()
				if ra == nil {
					continue
				}
				var names []string
				if c := ra.GetCluster(); c != "" {
					names = append(names, c)
				}
				for _, w := range ra.GetWeightedClusters().GetClusters() {
					names = append(names, w.Name)
				}
				for _, m := range ra.RequestMirrorPolicies {
					names = append(names, m.Cluster)
				}
				for _, n := range names {
					switch {
					case clusters[n]:
					case n == invalidBackendCluster && (ra.ClusterNotFoundResponseCode == routev3.RouteAction_INTERNAL_SERVER_ERROR ||
						ra.ClusterNotFoundResponseCode == routev3.RouteAction_SERVICE_UNAVAILABLE):
					default:
						errf("route %s names cluster %q, which does not exist", er.Name, n)
					}
				}
			}
		}
	}

	// Each IR route, where its listener's route configuration has it; a
	// route two listeners of a port give the same hostname is there once,
	// where the first (more specific) listener put it.
	byName := map[string]routeAt{}
	counted := map[string]bool{}
	for _, l := range g.HTTP {
		rcName := fmt.Sprintf("http-%d", l.Port)
		if l.TLS != nil {
			rcName = l.Name
		}
		last := map[string]int{}
		for _, r := range l.Routes {
			if counted[rcName+"\x00"+r.Name] {
				continue
			}
			if owner := shadowingListener(g, l, r.Hostname); owner != "" {
				if _, ok := at[rcName+"\x00"+r.Name]; ok {
					errf("listener %s: route %s is served, though listener %s owns its hostname %q", l.Name, r.Name, owner, r.Hostname)
				}
				continue
			}
			counted[rcName+"\x00"+r.Name] = true
			a, ok := at[rcName+"\x00"+r.Name]
			if !ok {
				errf("listener %s: route %s is not in route configuration %s", l.Name, r.Name, rcName)
				continue
			}
			want := r.Hostname
			if want == "" {
				want = "*"
			}
			if a.vhost != want {
				errf("route %s is in virtual host %s, want %s", r.Name, a.vhost, want)
			}
			if prev, ok := last[a.vhost]; ok && a.index <= prev {
				errf("listener %s: route %s comes before a route that precedes it", l.Name, r.Name)
			}
			last[a.vhost] = a.index
			byName[r.Name] = a
		}
	}
	if len(counted) != len(at) {
		errf("%d distinct IR routes became %d Envoy routes", len(counted), len(at))
	}
	return byName
}

// shadowingListener names a plain HTTP listener of l's port, more specific
// than l, whose hostname matches every host that the route hostname host
// does ("" when there is none): the Gateway API gives those requests to it.
func shadowingListener(g *ir.Group, l *ir.HTTPListener, host string) string {
	if l.TLS != nil || host == "" {
		return ""
	}
	// A host the route hostname matches: the name itself, or for a
	// wildcard, one label in its place.
	probe, wild := strings.CutPrefix(host, "*.")
	if wild {
		probe = "probe." + probe
	}
	for _, o := range g.HTTP {
		if o == l || o.Port != l.Port || o.TLS != nil || o.Hostname == "" || o.Hostname == l.Hostname {
			continue
		}
		if wild && !strings.HasPrefix(o.Hostname, "*.") {
			continue // an exact name never holds all of a wildcard
		}
		// More specific than l, and matching the route's hosts.
		if hostnameMatches(o.Hostname, probe) && (l.Hostname == "" || hostnameMatches(l.Hostname, strings.TrimPrefix(o.Hostname, "*."))) {
			return o.Name
		}
	}
	return ""
}

// hostnameMatches is the Gateway API's hostname match, written apart from
// the translator: "*.example.com" matches a.example.com and
// b.a.example.com, not example.com.
func hostnameMatches(pattern, host string) bool {
	if suffix, ok := strings.CutPrefix(pattern, "*"); ok {
		return len(host) > len(suffix) && strings.HasSuffix(host, suffix)
	}
	return pattern == host
}

// marshalAll is every resource, deterministically marshalled, by type and
// name.
func marshalAll(t testing.TB, res Resources) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	for typ, list := range res {
		for _, r := range list {
			b, err := proto.MarshalOptions{Deterministic: true}.Marshal(r)
			if err != nil {
				t.Fatal(err)
			}
			out[typ+" "+name(r)] = b
		}
	}
	return out
}
