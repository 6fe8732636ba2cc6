package gatewayapi

import (
	"fmt"
	"slices"
	"strconv"
	"time"

	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/berthnet/berth/xds/ir"
)

// compiledRoute is an HTTPRoute or GRPCRoute translated once, before it is
// attached to listeners: its servable rules, what was dropped and why, and
// the clusters its backends name.
type compiledRoute struct {
	kind            string // "HTTPRoute" or "GRPCRoute"
	ns, name        string
	generation      int64
	created         time.Time
	hostnames       []string
	parentRefs      []gwv1.ParentReference
	rules           []*compiledRule
	dropped         []string
	backends        *backends
	namePrefix      string // "httproute/<ns>/<name>"
	precedenceOwner string // "<kind>/<ns>/<name>"
	// hostEntries are the entries appendEntries made per hostname (and
	// listener port, when a rule redirects to it), so a route compiled
	// once (see Memo) keeps its IR routes.
	hostEntries map[entriesKey][]routeEntry
	// listenerPortRedirect: a rule redirects without a port, so its
	// entries depend on the port of the listener they serve (redirectPort).
	listenerPortRedirect bool
}

// entriesKey names the entries of a route for one hostname; port and tls
// are the listener's port and protocol, or zero when no rule of the route
// depends on them. A compiled route outlives a change of its Gateway.
type entriesKey struct {
	host string
	port int32
	tls  bool
}

// entriesKey is the key of the route's entries on a listener of port
// (HTTPS when tls).
func (cr *compiledRoute) entriesKey(host string, port int32, tls bool) entriesKey {
	if !cr.listenerPortRedirect {
		return entriesKey{host: host}
	}
	return entriesKey{host, port, tls}
}

// compiledRule is one servable rule: its matches and the IR route every
// match shares (filters, action, timeouts).
type compiledRule struct {
	index   int
	matches []*compiledMatch
	tmpl    ir.HTTPRoute
}

func newCompiledRoute(kind, ns, name string, gen int64, created time.Time, hosts []gwv1.Hostname, parents []gwv1.ParentReference, ix *index, grpc bool) *compiledRoute {
	cr := &compiledRoute{
		kind: kind, ns: ns, name: name, generation: gen, created: created,
		parentRefs:      parents,
		backends:        newBackends(ix, kind, ns, grpc),
		precedenceOwner: kind + "/" + ns + "/" + name,
	}
	if grpc {
		cr.namePrefix = "grpcroute/" + ns + "/" + name
	} else {
		cr.namePrefix = "httproute/" + ns + "/" + name
	}
	for _, h := range hosts {
		cr.hostnames = append(cr.hostnames, string(h))
	}
	return cr
}

// compileHTTPRoute translates an HTTPRoute's rules.
func compileHTTPRoute(r *gwv1.HTTPRoute, ix *index) *compiledRoute {
	cr := newCompiledRoute("HTTPRoute", r.Namespace, r.Name, r.Generation, r.CreationTimestamp.Time,
		r.Spec.Hostnames, r.Spec.ParentRefs, ix, false)
	return compileRules(cr, r.Spec.Rules, cr.httpRule)
}

// compileGRPCRoute translates a GRPCRoute's rules; its backends are HTTP/2.
func compileGRPCRoute(r *gwv1.GRPCRoute, ix *index) *compiledRoute {
	cr := newCompiledRoute("GRPCRoute", r.Namespace, r.Name, r.Generation, r.CreationTimestamp.Time,
		r.Spec.Hostnames, r.Spec.ParentRefs, ix, true)
	return compileRules(cr, r.Spec.Rules, cr.grpcRule)
}

// compileRules compiles each rule of a route. A rule that cannot be served
// is dropped and recorded; the others are unaffected.
func compileRules[R any](cr *compiledRoute, rules []R, compile func(int, *R) (*compiledRule, error)) *compiledRoute {
	for i := range rules {
		rule, err := compile(i, &rules[i])
		if err != nil {
			cr.dropped = append(cr.dropped, fmt.Sprintf("rules[%d]: %v", i, err))
			continue
		}
		cr.rules = append(cr.rules, rule)
	}
	return cr
}

// compileMatches compiles a rule's matches; a rule without any matches
// every request.
func compileMatches[M any](index int, ms []M, compile func(*M) (*compiledMatch, error)) (*compiledRule, error) {
	rule := &compiledRule{index: index}
	if len(ms) == 0 {
		ms = make([]M, 1)
	}
	for j := range ms {
		m, err := compile(&ms[j])
		if err != nil {
			return nil, fmt.Errorf("matches[%d]: %w", j, err)
		}
		m.index = j
		rule.matches = append(rule.matches, m)
	}
	return rule, nil
}

// plainRefs returns a rule's backend references, refusing any that
// carries filters of its own.
func plainRefs[B any](refs []B, get func(*B) (gwv1.BackendRef, int)) ([]gwv1.BackendRef, error) {
	out := make([]gwv1.BackendRef, len(refs))
	for j := range refs {
		ref, filters := get(&refs[j])
		if filters > 0 {
			return nil, fmt.Errorf("backendRefs[%d]: per-backend filters are not supported; put them on the rule", j)
		}
		out[j] = ref
	}
	return out, nil
}

func (cr *compiledRoute) httpRule(i int, spec *gwv1.HTTPRouteRule) (*compiledRule, error) {
	rule, err := compileMatches(i, spec.Matches, httpMatch)
	if err != nil {
		return nil, err
	}
	refs, err := plainRefs(spec.BackendRefs, func(b *gwv1.HTTPBackendRef) (gwv1.BackendRef, int) { return b.BackendRef, len(b.Filters) })
	if err != nil {
		return nil, err
	}
	if spec.Retry != nil || spec.SessionPersistence != nil {
		return nil, fmt.Errorf("retry and sessionPersistence are not supported")
	}
	fs, err := httpFilters(spec.Filters, cr.backends)
	if err != nil {
		return nil, err
	}
	if err := rule.checkPrefixOnly(fs); err != nil {
		return nil, err
	}
	if t := spec.Timeouts; t != nil {
		if rule.tmpl.Timeout, err = duration(t.Request); err != nil {
			return nil, fmt.Errorf("timeouts.request: %w", err)
		}
		// "0s" disables the timeout; unset leaves Envoy's default.
		rule.tmpl.TimeoutDisabled = t.Request != nil && rule.tmpl.Timeout == 0
		if rule.tmpl.BackendTimeout, err = duration(t.BackendRequest); err != nil {
			return nil, fmt.Errorf("timeouts.backendRequest: %w", err)
		}
	}
	cr.action(rule, fs, refs)
	return rule, nil
}

func (cr *compiledRoute) grpcRule(i int, spec *gwv1.GRPCRouteRule) (*compiledRule, error) {
	rule, err := compileMatches(i, spec.Matches, grpcMatch)
	if err != nil {
		return nil, err
	}
	refs, err := plainRefs(spec.BackendRefs, func(b *gwv1.GRPCBackendRef) (gwv1.BackendRef, int) { return b.BackendRef, len(b.Filters) })
	if err != nil {
		return nil, err
	}
	if spec.SessionPersistence != nil {
		return nil, fmt.Errorf("sessionPersistence is not supported")
	}
	fs, err := grpcFilters(spec.Filters, cr.backends)
	if err != nil {
		return nil, err
	}
	cr.action(rule, fs, refs)
	return rule, nil
}

func (rule *compiledRule) checkPrefixOnly(fs *filterSet) error {
	if !fs.prefixOnly {
		return nil
	}
	for _, m := range rule.matches {
		if m.path.Type != ir.Prefix {
			return fmt.Errorf("matches[%d]: ReplacePrefixMatch needs a PathPrefix match", m.index)
		}
	}
	return nil
}

// action fills in a rule's filters and its one action: the redirect, else
// the weighted backends, else a 500 (no backend resolved, or none given;
// a 503 for gRPC, which a gRPC client sees as UNAVAILABLE).
func (cr *compiledRoute) action(rule *compiledRule, fs *filterSet, refs []gwv1.BackendRef) {
	t := &rule.tmpl
	t.RequestHeaders, t.ResponseHeaders, t.Rewrite, t.Mirrors = fs.requestHeaders, fs.responseHeaders, fs.rewrite, fs.mirrors
	if fs.redirect != nil {
		t.Redirect = fs.redirect
		cr.listenerPortRedirect = cr.listenerPortRedirect || t.Redirect.Port == nil
		return
	}
	t.GRPC = cr.backends.grpc
	if t.Backends = cr.backends.weighted(refs); t.Backends == nil {
		t.DirectResponse = &ir.DirectResponse{Status: unresolvedStatus(t.GRPC)}
	}
}

// unresolvedStatus is the answer to a request for backends that do not
// resolve: the Gateway API asks for a 500, and for UNAVAILABLE on gRPC,
// which Envoy sends a gRPC client for a 503.
func unresolvedStatus(grpc bool) uint32 {
	if grpc {
		return 503
	}
	return 500
}

// duration parses a Gateway API duration ("10s", "1h30m", "500ms").
func duration(d *gwv1.Duration) (time.Duration, error) {
	if d == nil {
		return 0, nil
	}
	v, err := time.ParseDuration(string(*d))
	if err != nil {
		return 0, err
	}
	if v < 0 {
		return 0, fmt.Errorf("%s is negative", *d)
	}
	return v, nil
}

// appendEntries appends the IR routes of the route for one hostname on a
// listener of port (HTTPS when tls), with their precedence.
func (cr *compiledRoute) appendEntries(es []routeEntry, host string, port int32, tls bool) []routeEntry {
	key := cr.entriesKey(host, port, tls)
	if made, ok := cr.hostEntries[key]; ok {
		return append(es, made...)
	}
	start := len(es)
	for _, rule := range cr.rules {
		redirect := rule.tmpl.Redirect
		if p, ok := redirectPort(redirect, port, tls); ok {
			copied := *redirect
			copied.Port = &p
			redirect = &copied
		}
		for _, m := range rule.matches {
			r := rule.tmpl
			r.Redirect = redirect
			r.Name = cr.namePrefix + "/rule/" + strconv.Itoa(rule.index) + "/match/" + strconv.Itoa(m.index) + "/host/" + host
			r.Hostname = host
			r.Path, r.Headers, r.QueryParams, r.Method = m.path, m.headers, m.query, m.method
			k := m.key
			k.created, k.source, k.rule, k.match = cr.created, cr.precedenceOwner, rule.index, m.index
			es = append(es, routeEntry{key: k.withHost(host), route: &r})
		}
	}
	if cr.hostEntries == nil {
		cr.hostEntries = map[entriesKey][]routeEntry{}
	}
	cr.hostEntries[key] = slices.Clone(es[start:])
	return es
}

// redirectPort is the port a redirect without one must send from a
// listener of port (HTTPS when tls), as the Gateway API fixes it, when
// Envoy would not send it by itself. With no scheme: the listener's port
// ("If redirect scheme is empty, the redirect port MUST be the Gateway
// Listener port"); Envoy would keep whatever port the client wrote, or
// none with a redirect hostname. With a scheme: its well-known port,
// where Envoy would keep a non-default port the client wrote. On 80 (HTTP)
// and 443 (HTTPS) listeners nothing is written: clients name that port or
// none, and the spec says not to write it, which Envoy follows (it drops
// the request's default port when the scheme changes).
func redirectPort(rd *ir.Redirect, port int32, tls bool) (uint32, bool) {
	switch {
	case rd == nil || rd.Port != nil || defaultPort(port, tls):
		return 0, false
	case rd.Scheme == nil:
		return uint32(port), true
	case *rd.Scheme == "https":
		return 443, true
	}
	return 80, true
}

// defaultPort says whether port is the default of the listener's scheme.
func defaultPort(port int32, tls bool) bool {
	return (!tls && port == 80) || (tls && port == 443)
}
