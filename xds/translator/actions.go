package translator

import (
	"math"
	"regexp"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/berthnet/berth/xds/ir"
)

// invalidBackendCluster is the cluster that requests weighted to an
// unresolved backend (an ir.Backend with no Cluster) are sent to. It is
// never defined: the route says INTERNAL_SERVER_ERROR for a cluster that
// does not exist, so exactly that share of requests gets a 500, as the
// Gateway API requires. The name cannot be a Kubernetes namespace, and
// Translate refuses a group that defines it.
const invalidBackendCluster = "_berth_invalid_backend"

// modifiable says whether Envoy lets a route add, set or remove a header:
// not a pseudo-header (":path") nor Host, which it refuses with a NACK of
// the whole route configuration (every route of the port). Such changes
// are left out; the first stage never asks for them (it makes a Host set
// a host rewrite, and refuses the rest in the route's status).
func modifiable(header string) bool {
	return !strings.HasPrefix(header, ":") && !strings.EqualFold(header, "host")
}

// headersToRemove are the modifier's removals Envoy allows.
func headersToRemove(m *ir.HeaderModifier) []string {
	var out []string
	for _, h := range m.Remove {
		if modifiable(h) {
			out = append(out, h)
		}
	}
	return out
}

// headerOptions are the headers a modifier sets (overwriting) and adds
// (appending), in that order.
func headerOptions(m *ir.HeaderModifier) []*corev3.HeaderValueOption {
	var opts []*corev3.HeaderValueOption
	for _, h := range m.Set {
		if !modifiable(h.Name) {
			continue
		}
		opts = append(opts, &corev3.HeaderValueOption{
			Header:       &corev3.HeaderValue{Key: h.Name, Value: h.Value},
			AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
		})
	}
	for _, h := range m.Add {
		if !modifiable(h.Name) {
			continue
		}
		opts = append(opts, &corev3.HeaderValueOption{
			Header:       &corev3.HeaderValue{Key: h.Name, Value: h.Value},
			AppendAction: corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD,
		})
	}
	return opts
}

// redirectCode is Envoy's name for a redirect status (ir.Validate allows
// only these five).
func redirectCode(status int) routev3.RedirectAction_RedirectResponseCode {
	switch status {
	case 302:
		return routev3.RedirectAction_FOUND
	case 303:
		return routev3.RedirectAction_SEE_OTHER
	case 307:
		return routev3.RedirectAction_TEMPORARY_REDIRECT
	case 308:
		return routev3.RedirectAction_PERMANENT_REDIRECT
	}
	return routev3.RedirectAction_MOVED_PERMANENTLY
}

// redirectAction answers with a redirect. The IR says the port outright
// where the Gateway API fixes it (the first stage writes the listener's
// port when the redirect names neither scheme nor port); an unset field
// keeps the request's value.
func redirectAction(rd *ir.Redirect, prefix *pathPrefix) *routev3.RedirectAction {
	a := &routev3.RedirectAction{ResponseCode: redirectCode(rd.StatusCode)}
	if rd.Scheme != nil {
		a.SchemeRewriteSpecifier = &routev3.RedirectAction_SchemeRedirect{SchemeRedirect: *rd.Scheme}
	}
	if rd.Hostname != nil {
		a.HostRedirect = *rd.Hostname
	}
	if rd.Port != nil {
		a.PortRedirect = *rd.Port
	}
	if p := rd.Path; p != nil {
		switch {
		case p.FullPath != nil:
			a.PathRewriteSpecifier = &routev3.RedirectAction_PathRedirect{PathRedirect: *p.FullPath}
		case p.PrefixMatch != nil && prefix != nil:
			if rewrite, re := prefixReplacement(*prefix, *p.PrefixMatch); re != nil {
				a.PathRewriteSpecifier = &routev3.RedirectAction_RegexRewrite{RegexRewrite: re}
			} else {
				a.PathRewriteSpecifier = &routev3.RedirectAction_PrefixRewrite{PrefixRewrite: rewrite}
			}
		}
	}
	return a
}

// unresolvedStatus answers requests for unresolved backends: 500 as the
// Gateway API asks for HTTP, 503 for gRPC, which Envoy's local reply turns
// into grpc-status UNAVAILABLE (14), as it asks for gRPC.
func unresolvedStatus(r *ir.HTTPRoute) uint32 {
	if r.GRPC {
		return 503
	}
	return 500
}

func directResponse(status uint32, body string) *routev3.DirectResponseAction {
	d := &routev3.DirectResponseAction{Status: status}
	if body != "" {
		d.Body = &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: body}}
	}
	return d
}

// routeAction forwards to the route's backends, or is nil when every
// backend with a weight is unresolved (the caller answers 500 itself).
func routeAction(r *ir.HTTPRoute, prefix *pathPrefix) *routev3.RouteAction {
	ws, unresolved := backendWeights(r.Backends)
	if len(ws) == 1 && ws[0].Name == invalidBackendCluster {
		return nil
	}
	a := &routev3.RouteAction{}
	if len(ws) == 1 {
		a.ClusterSpecifier = &routev3.RouteAction_Cluster{Cluster: ws[0].Name}
	} else {
		a.ClusterSpecifier = &routev3.RouteAction_WeightedClusters{WeightedClusters: &routev3.WeightedCluster{Clusters: ws}}
	}
	if unresolved && !r.GRPC {
		// A gRPC route keeps Envoy's default, 503: UNAVAILABLE to a gRPC
		// client (see unresolvedStatus).
		a.ClusterNotFoundResponseCode = routev3.RouteAction_INTERNAL_SERVER_ERROR
	}
	if rw := r.Rewrite; rw != nil {
		if rw.Hostname != nil {
			a.HostRewriteSpecifier = &routev3.RouteAction_HostRewriteLiteral{HostRewriteLiteral: *rw.Hostname}
		}
		if p := rw.Path; p != nil {
			switch {
			case p.FullPath != nil:
				// The whole path; Envoy keeps the query string.
				a.RegexRewrite = &matcherv3.RegexMatchAndSubstitute{
					Pattern:      regexMatcher("^/.*$"),
					Substitution: escapeSubstitution(*p.FullPath),
				}
			case p.PrefixMatch != nil && prefix != nil:
				a.PrefixRewrite, a.RegexRewrite = prefixReplacement(*prefix, *p.PrefixMatch)
			}
		}
	}
	for _, m := range r.Mirrors {
		a.RequestMirrorPolicies = append(a.RequestMirrorPolicies, mirrorPolicy(m))
	}
	timeout := r.Timeout
	if r.BackendTimeout > 0 {
		// One try (retries are not configured), bounded by the backend
		// timeout; without a request timeout, the request may last as long
		// as that try rather than Envoy's default 15 s.
		a.RetryPolicy = &routev3.RetryPolicy{
			NumRetries:    wrapperspb.UInt32(0),
			PerTryTimeout: durationpb.New(r.BackendTimeout),
		}
		if timeout == 0 {
			timeout = r.BackendTimeout
		}
	}
	switch {
	case r.TimeoutDisabled:
		// No timeout at all (Gateway API "0s"): Envoy reads 0s so, while
		// leaving the field out would mean its default of 15 s.
		a.Timeout = &durationpb.Duration{}
	case timeout > 0:
		a.Timeout = durationpb.New(timeout)
	}
	return a
}

// backendWeights merges the backends by cluster, in the order they first
// appear, dropping those of weight zero; the unresolved ones become one
// entry for invalidBackendCluster, and unresolved says there is one.
func backendWeights(bs []*ir.Backend) (ws []*routev3.WeightedCluster_ClusterWeight, unresolved bool) {
	index := make(map[string]int, len(bs))
	for _, b := range bs {
		if b.Weight == 0 {
			continue
		}
		name := b.Cluster
		if name == "" {
			name, unresolved = invalidBackendCluster, true
		}
		if i, ok := index[name]; ok {
			ws[i].Weight = wrapperspb.UInt32(ws[i].Weight.GetValue() + b.Weight)
			continue
		}
		index[name] = len(ws)
		ws = append(ws, &routev3.WeightedCluster_ClusterWeight{Name: name, Weight: wrapperspb.UInt32(b.Weight)})
	}
	return ws, unresolved
}

// prefixReplacement replaces the path prefix a route matched by repl, the
// Gateway API way: "/api" -> "/v2" makes "/api/x" "/v2/x", "/api" -> "/"
// makes "/api/x" "/x" (not "//x", which a plain prefix_rewrite would give).
// It gives either a prefix_rewrite or a regex_rewrite.
func prefixReplacement(prefix pathPrefix, repl string) (string, *matcherv3.RegexMatchAndSubstitute) {
	repl = strings.TrimRight(repl, "/")
	switch {
	case prefix.value == "":
		// The route matched "/": put repl in front of the whole path.
		return repl + "/", nil
	case repl == "":
		return "", &matcherv3.RegexMatchAndSubstitute{
			Pattern:      regexMatcher("^" + regexp.QuoteMeta(prefix.value) + "/*"),
			Substitution: "/",
		}
	case prefix.regex:
		return "", &matcherv3.RegexMatchAndSubstitute{
			Pattern:      regexMatcher("^" + regexp.QuoteMeta(prefix.value)),
			Substitution: escapeSubstitution(repl),
		}
	}
	return repl, nil
}

// escapeSubstitution keeps RE2 from reading backslashes in a literal
// replacement as group references.
func escapeSubstitution(s string) string {
	return strings.ReplaceAll(s, `\`, `\\`)
}

// mirrorPolicy copies requests to a cluster: Percent of them, as a
// fraction per million (0 mirrors none; the first stage writes 100 when
// the route sets no fraction), or all of them without a fraction at 100.
func mirrorPolicy(m *ir.Mirror) *routev3.RouteAction_RequestMirrorPolicy {
	p := &routev3.RouteAction_RequestMirrorPolicy{Cluster: m.Cluster}
	if m.Percent < 100 {
		p.RuntimeFraction = &corev3.RuntimeFractionalPercent{DefaultValue: &typev3.FractionalPercent{
			Numerator:   uint32(math.Round(m.Percent * 10000)),
			Denominator: typev3.FractionalPercent_MILLION,
		}}
	}
	return p
}
