package translator

import (
	"regexp"
	"slices"
	"strings"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/berthnet/berth/xds/ir"
)

// buildRouteConfig makes one route configuration from the routes of the
// given listeners (most specific listener hostname first): one virtual host
// per route hostname, its routes in the listener's own precedence order.
//
// A request belongs to the most specific listener whose hostname matches
// it (the Gateway API), and Envoy gives it to the virtual host of the most
// specific domain that matches it (exact, then the longest "*." suffix,
// then "*"). For the two to agree when listeners share the port, every
// listener with a hostname gets a virtual host of that hostname (empty,
// so a 404, when none of its routes is for the whole of it), and a route
// hostname that a more specific listener's hostname covers is left out:
// such requests are that listener's, never a less specific one's. So a
// route of the listener without a hostname no longer answers
// a.example.com while a listener "*.example.com" is on the port.
func buildRouteConfig(name string, ls []*ir.HTTPListener, m *memoTable) *routev3.RouteConfiguration {
	var hosts []vhostBuild
	byDomain := map[string]int{}
	vhost := func(domain string) *vhostBuild {
		i, ok := byDomain[domain]
		if !ok {
			i = len(hosts)
			byDomain[domain] = i
			hosts = append(hosts, vhostBuild{domain: domain, old: m.lastVirtualHost(name, domain)})
		}
		return &hosts[i]
	}
	for i, l := range ls {
		if len(ls) > 1 && l.Hostname != "" {
			vhost(l.Hostname)
		}
		for _, r := range l.Routes {
			domain := r.Hostname
			if domain == "" {
				domain = "*"
			}
			if coveredByEarlier(ls[:i], domain) {
				continue
			}
			vhost(domain).add(m.route(r))
		}
	}
	rc := &routev3.RouteConfiguration{
		Name: name,
		// Gateway API hostnames carry no port; a Host header may.
		IgnorePortInHostMatching: true,
		// Routes name the reserved cluster of unresolved backends, which
		// does not exist (see invalidBackendCluster).
		ValidateClusters: wrapperspb.Bool(false),
	}
	// Envoy chooses a virtual host by the specificity of its domain, not by
	// its position: sorting only makes the output stable.
	slices.SortFunc(hosts, func(a, b vhostBuild) int { return strings.Compare(a.domain, b.domain) })
	rc.VirtualHosts = make([]*routev3.VirtualHost, len(hosts))
	for i := range hosts {
		vh := hosts[i].finish()
		m.useVirtualHost(name, vh)
		rc.VirtualHosts[i] = vh
	}
	return rc
}

// coveredByEarlier says whether a more specific listener of the port (one
// of ls) serves every host the domain matches, so that requests for them
// never reach a route of a later listener.
func coveredByEarlier(ls []*ir.HTTPListener, domain string) bool {
	for _, l := range ls {
		if covers(l.Hostname, domain) {
			return true
		}
	}
	return false
}

// covers says whether every host that domain matches also matches the
// listener hostname h: h itself, or, for h "*.example.com", any name or
// wildcard under example.com ("a.example.com", "*.a.example.com"). The
// Gateway API's wildcard matches one label or more, as Envoy's suffix
// wildcard does.
func covers(h, domain string) bool {
	switch {
	case h == "" || domain == "*":
		return false
	case h == domain:
		return true
	case strings.HasPrefix(h, "*."):
		return strings.HasSuffix(domain, h[1:])
	}
	return false
}

// vhostBuild gathers the routes of one virtual host. While they are the
// routes of the last virtual host of the domain, in order, nothing is
// allocated: a route configuration of thousands of unchanged virtual hosts
// costs a comparison each.
type vhostBuild struct {
	domain string
	old    *routev3.VirtualHost
	n      int              // routes so far equal to old's first n
	routes []*routev3.Route // once they differ: all of them
}

func (b *vhostBuild) add(er *routev3.Route) {
	if b.routes == nil && b.old != nil && b.n < len(b.old.Routes) && b.old.Routes[b.n] == er {
		b.n++
		return
	}
	if b.routes == nil {
		b.routes = make([]*routev3.Route, b.n, b.n+1)
		if b.n > 0 {
			copy(b.routes, b.old.Routes[:b.n])
		}
	}
	b.routes = append(b.routes, er)
}

func (b *vhostBuild) finish() *routev3.VirtualHost {
	if b.routes == nil && b.old == nil {
		// A listener's hostname with no route of its own: a 404.
		return &routev3.VirtualHost{Name: b.domain, Domains: []string{b.domain}}
	}
	if b.routes == nil {
		if b.n == len(b.old.Routes) {
			return b.old
		}
		b.routes = slices.Clone(b.old.Routes[:b.n])
	}
	return &routev3.VirtualHost{Name: b.domain, Domains: []string{b.domain}, Routes: b.routes}
}

// buildRoute makes the Envoy route of one IR route: its match, header
// changes and action.
func buildRoute(r *ir.HTTPRoute) *routev3.Route {
	match, prefix := routeMatch(r)
	er := &routev3.Route{Name: r.Name, Match: match}
	if m := r.RequestHeaders; m != nil {
		er.RequestHeadersToAdd = headerOptions(m)
		er.RequestHeadersToRemove = headersToRemove(m)
	}
	if m := r.ResponseHeaders; m != nil {
		er.ResponseHeadersToAdd = headerOptions(m)
		er.ResponseHeadersToRemove = headersToRemove(m)
	}
	switch {
	case r.Redirect != nil:
		er.Action = &routev3.Route_Redirect{Redirect: redirectAction(r.Redirect, prefix)}
	case r.DirectResponse != nil:
		er.Action = &routev3.Route_DirectResponse{DirectResponse: directResponse(r.DirectResponse.Status, r.DirectResponse.Body)}
	default:
		ra := routeAction(r, prefix)
		if ra == nil {
			// Every backend with a weight is unresolved.
			er.Action = &routev3.Route_DirectResponse{DirectResponse: directResponse(unresolvedStatus(r), "")}
		} else {
			er.Action = &routev3.Route_Route{Route: ra}
		}
	}
	return er
}

// pathPrefix is how a Prefix path match was expressed to Envoy, which a
// prefix rewrite or redirect must follow.
type pathPrefix struct {
	// value is the prefix without trailing slashes; "" is the root.
	value string
	// regex is set when the prefix could not be a path_separated_prefix
	// and was matched with a regular expression instead.
	regex bool
}

// routeMatch is the match of a route, and its path prefix when the path is
// a Prefix match (nil otherwise).
func routeMatch(r *ir.HTTPRoute) (*routev3.RouteMatch, *pathPrefix) {
	m := &routev3.RouteMatch{}
	var prefix *pathPrefix
	switch p := r.Path; {
	case p == nil:
		m.PathSpecifier = &routev3.RouteMatch_Prefix{Prefix: "/"}
	case p.Type == ir.Exact:
		m.PathSpecifier = &routev3.RouteMatch_Path{Path: p.Value}
	case p.Type == ir.Regex:
		m.PathSpecifier = &routev3.RouteMatch_SafeRegex{SafeRegex: regexMatcher(p.Value)}
	default: // ir.Prefix, by whole segments: /api matches /api and /api/x, not /apix.
		prefix = &pathPrefix{value: strings.TrimRight(p.Value, "/")}
		switch {
		case prefix.value == "":
			m.PathSpecifier = &routev3.RouteMatch_Prefix{Prefix: "/"}
		case strings.ContainsAny(prefix.value, "?#"):
			// path_separated_prefix refuses these characters.
			prefix.regex = true
			m.PathSpecifier = &routev3.RouteMatch_SafeRegex{SafeRegex: regexMatcher(segmentPrefixRegex(prefix.value))}
		default:
			m.PathSpecifier = &routev3.RouteMatch_PathSeparatedPrefix{PathSeparatedPrefix: prefix.value}
		}
	}
	for _, h := range r.Headers {
		m.Headers = append(m.Headers, &routev3.HeaderMatcher{
			Name:                 strings.ToLower(h.Name),
			HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: stringMatcher(h.StringMatch)},
		})
	}
	if r.Method != "" {
		m.Headers = append(m.Headers, &routev3.HeaderMatcher{
			Name:                 ":method",
			HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: stringMatcher(ir.StringMatch{Type: ir.Exact, Value: r.Method})},
		})
	}
	for _, q := range r.QueryParams {
		m.QueryParameters = append(m.QueryParameters, &routev3.QueryParameterMatcher{
			Name:                         q.Name,
			QueryParameterMatchSpecifier: &routev3.QueryParameterMatcher_StringMatch{StringMatch: stringMatcher(q.StringMatch)},
		})
	}
	return m, prefix
}

// segmentPrefixRegex matches a path equal to prefix or continuing it with a
// "/": what path_separated_prefix does, for the prefixes it refuses.
func segmentPrefixRegex(prefix string) string {
	return regexp.QuoteMeta(prefix) + "(/.*)?"
}

func stringMatcher(m ir.StringMatch) *matcherv3.StringMatcher {
	switch m.Type {
	case ir.Prefix:
		return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: m.Value}}
	case ir.Regex:
		return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: regexMatcher(m.Value)}}
	}
	return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: m.Value}}
}

func regexMatcher(re string) *matcherv3.RegexMatcher {
	return &matcherv3.RegexMatcher{Regex: re}
}
