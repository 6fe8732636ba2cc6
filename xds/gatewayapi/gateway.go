package gatewayapi

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/berthnet/berth/xds/ir"
)

// gatewayState is one managed Gateway during translation.
type gatewayState struct {
	gw       *gwv1.Gateway
	group    string
	accepted bool
	// acceptReason and acceptMessage explain a Gateway-level refusal.
	acceptReason, acceptMessage string
	addresses                   []string
	listeners                   []*listenerState
	clusters                    map[string]*ir.Cluster
	// clusterRefs counts the attachments (route to listener) that use
	// each cluster, so that an attachMemo can drop a cluster with the
	// last route that used it.
	clusterRefs map[string]int
	// clusterList is clusters sorted by name as the last finishGateway
	// gave them, for an attachMemo to patch.
	clusterList []*ir.Cluster
}

// listenerState is one listener of a managed Gateway.
type listenerState struct {
	spec     *gwv1.Listener
	hostname string
	// attachable: routes may attach (Accepted, not Conflicted, Gateway accepted).
	attachable bool
	// served: the listener goes into the IR (attachable, and its
	// certificates resolved).
	served bool
	kinds  []gwv1.RouteGroupKind
	// namespaces: from (Same, All, Selector, None) and the parsed selector.
	from     gwv1.FromNamespaces
	selector labels.Selector
	tls      *ir.TLS

	accepted, conflicted, resolvedRefs metav1.Condition

	attached map[string]bool
	// httpHosts and grpcHosts are the hostnames HTTPRoutes and GRPCRoutes
	// were attached for (see hostClaims).
	httpHosts, grpcHosts hostClaims
	entries              []routeEntry
}

// buildGateway checks a managed Gateway and its listeners. classProblem is
// non-empty when its GatewayClass is not accepted.
func buildGateway(gw *gwv1.Gateway, classProblem string, ix *index) *gatewayState {
	gs := &gatewayState{
		gw:          gw,
		group:       "gateway/" + gw.Namespace + "/" + gw.Name,
		clusters:    map[string]*ir.Cluster{},
		clusterRefs: map[string]int{},
	}
	gen := gw.Generation
	switch {
	case classProblem != "":
		gs.acceptReason, gs.acceptMessage = string(gwv1.GatewayReasonInvalid), classProblem
	case gw.Spec.Infrastructure != nil && gw.Spec.Infrastructure.ParametersRef != nil:
		p := gw.Spec.Infrastructure.ParametersRef
		gs.acceptReason = string(gwv1.GatewayReasonInvalidParameters)
		gs.acceptMessage = fmt.Sprintf("infrastructure.parametersRef %s/%s %s: Berth takes no Gateway parameters; remove it", p.Group, p.Kind, p.Name)
	}
	for i, a := range gw.Spec.Addresses {
		if a.Type != nil && *a.Type != gwv1.IPAddressType {
			if gs.acceptReason == "" {
				gs.acceptReason = string(gwv1.GatewayReasonUnsupportedAddress)
				gs.acceptMessage = fmt.Sprintf("spec.addresses[%d]: type %s is not supported; use IPAddress", i, *a.Type)
			}
			continue
		}
		ip, err := netip.ParseAddr(a.Value)
		if err != nil {
			if gs.acceptReason == "" {
				gs.acceptReason = string(gwv1.GatewayReasonUnsupportedAddress)
				gs.acceptMessage = fmt.Sprintf("spec.addresses[%d]: %q is not an IP address", i, a.Value)
			}
			continue
		}
		gs.addresses = append(gs.addresses, ip.String())
	}
	gatewayOK := gs.acceptReason == ""

	for i := range gw.Spec.Listeners {
		gs.listeners = append(gs.listeners, buildListener(gw, &gw.Spec.Listeners[i], ix))
	}
	markConflicts(gs.listeners, gen)
	markUnavailablePorts(gs.listeners, gen)

	var invalid []string
	valid := 0
	for _, l := range gs.listeners {
		ok := l.accepted.Status == metav1.ConditionTrue && l.conflicted.Status == metav1.ConditionFalse
		if !ok {
			invalid = append(invalid, string(l.spec.Name))
			continue
		}
		valid++
		l.attachable = gatewayOK && len(l.kinds) > 0
		l.served = l.attachable && l.tlsOK()
	}
	switch {
	case !gatewayOK:
	case valid == 0:
		gs.acceptReason = string(gwv1.GatewayReasonListenersNotValid)
		gs.acceptMessage = "no valid listener: " + strings.Join(invalid, ", ")
	case len(invalid) > 0:
		gs.accepted = true
		gs.acceptReason = string(gwv1.GatewayReasonListenersNotValid)
		gs.acceptMessage = "listeners not accepted: " + strings.Join(invalid, ", ")
	default:
		gs.accepted = true
		gs.acceptReason = string(gwv1.GatewayReasonAccepted)
		gs.acceptMessage = "Gateway accepted by Berth"
	}
	sort.Strings(gs.addresses)
	return gs
}

func (l *listenerState) tlsOK() bool {
	if l.spec.Protocol != gwv1.HTTPSProtocolType {
		return true
	}
	return l.resolvedRefs.Reason != string(gwv1.ListenerReasonInvalidCertificateRef) &&
		l.resolvedRefs.Reason != string(gwv1.ListenerReasonRefNotPermitted) && l.tls != nil
}

// buildListener checks one listener on its own; conflicts between
// listeners come after (markConflicts).
func buildListener(gw *gwv1.Gateway, spec *gwv1.Listener, ix *index) *listenerState {
	gen := gw.Generation
	l := &listenerState{spec: spec, from: gwv1.NamespacesFromSame, attached: map[string]bool{}}
	if spec.Hostname != nil {
		l.hostname = string(*spec.Hostname)
	}
	l.accepted = condition(string(gwv1.ListenerConditionAccepted), true, string(gwv1.ListenerReasonAccepted), "listener accepted", gen)
	l.resolvedRefs = condition(string(gwv1.ListenerConditionResolvedRefs), true, string(gwv1.ListenerReasonResolvedRefs), "all references resolved", gen)
	reject := func(reason gwv1.ListenerConditionReason, format string, args ...any) {
		if l.accepted.Status == metav1.ConditionTrue {
			l.accepted = condition(string(gwv1.ListenerConditionAccepted), false, string(reason), fmt.Sprintf(format, args...), gen)
		}
	}
	unresolved := func(reason gwv1.ListenerConditionReason, format string, args ...any) {
		if l.resolvedRefs.Status == metav1.ConditionTrue {
			l.resolvedRefs = condition(string(gwv1.ListenerConditionResolvedRefs), false, string(reason), fmt.Sprintf(format, args...), gen)
		}
	}

	switch spec.Protocol {
	case gwv1.HTTPProtocolType:
	case gwv1.HTTPSProtocolType:
		if spec.TLS == nil {
			unresolved(gwv1.ListenerReasonInvalidCertificateRef, "HTTPS listener without tls.certificateRefs")
		} else if spec.TLS.Mode != nil && *spec.TLS.Mode != gwv1.TLSModeTerminate {
			reject(gwv1.ListenerReasonUnsupportedValue, "tls.mode %s is not supported on HTTPS; use Terminate", *spec.TLS.Mode)
		} else {
			l.tls = resolveCertificates(gw, spec, ix, unresolved)
		}
	default:
		reject(gwv1.ListenerReasonUnsupportedProtocol, "protocol %s is not supported; use HTTP or HTTPS", spec.Protocol)
	}

	if spec.Protocol == gwv1.HTTPProtocolType || spec.Protocol == gwv1.HTTPSProtocolType {
		l.kinds = routeKinds(spec.AllowedRoutes, unresolved)
	}
	if ar := spec.AllowedRoutes; ar != nil && ar.Namespaces != nil {
		if ar.Namespaces.From != nil {
			l.from = *ar.Namespaces.From
		}
		if l.from == gwv1.NamespacesFromSelector {
			sel, err := selector(ar.Namespaces.Selector)
			if err != nil {
				reject(gwv1.ListenerReasonUnsupportedValue, "allowedRoutes.namespaces.selector: %v", err)
			}
			l.selector = sel
		}
	}
	l.conflicted = condition(string(gwv1.ListenerConditionConflicted), false, string(gwv1.ListenerReasonNoConflicts), "no conflicts", gen)
	return l
}

func selector(s *metav1.LabelSelector) (labels.Selector, error) {
	if s == nil {
		return nil, fmt.Errorf("from is Selector but no selector is set")
	}
	return metav1.LabelSelectorAsSelector(s)
}

// routeKinds returns the supported route kinds a listener allows:
// HTTPRoute and GRPCRoute unless allowedRoutes.kinds narrows them. An
// unsupported kind makes ResolvedRefs False (InvalidRouteKinds).
func routeKinds(ar *gwv1.AllowedRoutes, unresolved func(gwv1.ListenerConditionReason, string, ...any)) []gwv1.RouteGroupKind {
	g := gwv1.Group(gatewayGroup)
	if ar == nil || len(ar.Kinds) == 0 {
		return []gwv1.RouteGroupKind{{Group: &g, Kind: "HTTPRoute"}, {Group: &g, Kind: "GRPCRoute"}}
	}
	var out []gwv1.RouteGroupKind
	var bad []string
	for _, k := range ar.Kinds {
		group := gatewayGroup
		if k.Group != nil {
			group = string(*k.Group)
		}
		if group != gatewayGroup || (k.Kind != "HTTPRoute" && k.Kind != "GRPCRoute") {
			bad = append(bad, group+"/"+string(k.Kind))
			continue
		}
		dup := false
		for _, o := range out {
			dup = dup || o.Kind == k.Kind
		}
		if !dup {
			out = append(out, gwv1.RouteGroupKind{Group: &g, Kind: k.Kind})
		}
	}
	if len(bad) > 0 {
		unresolved(gwv1.ListenerReasonInvalidRouteKinds, "route kinds not supported: %s", strings.Join(bad, ", "))
	}
	return out
}

// markConflicts sets Conflicted on listeners that are not distinct: HTTP
// and HTTPS on one port (ProtocolConflict), or the same protocol, port and
// hostname (HostnameConflict). None of a conflicting set is accepted.
func markConflicts(ls []*listenerState, gen int64) {
	protocols := map[gwv1.PortNumber]map[gwv1.ProtocolType]bool{}
	for _, l := range ls {
		if l.accepted.Reason == string(gwv1.ListenerReasonUnsupportedProtocol) {
			continue
		}
		if protocols[l.spec.Port] == nil {
			protocols[l.spec.Port] = map[gwv1.ProtocolType]bool{}
		}
		protocols[l.spec.Port][l.spec.Protocol] = true
	}
	type key struct {
		port     gwv1.PortNumber
		protocol gwv1.ProtocolType
		host     string
	}
	hosts := map[key]int{}
	for _, l := range ls {
		hosts[key{l.spec.Port, l.spec.Protocol, l.hostname}]++
	}
	for _, l := range ls {
		if l.accepted.Reason == string(gwv1.ListenerReasonUnsupportedProtocol) {
			continue
		}
		var reason gwv1.ListenerConditionReason
		var msg string
		switch {
		case len(protocols[l.spec.Port]) > 1:
			reason, msg = gwv1.ListenerReasonProtocolConflict, fmt.Sprintf("another listener uses port %d with a different protocol", l.spec.Port)
		case hosts[key{l.spec.Port, l.spec.Protocol, l.hostname}] > 1:
			reason, msg = gwv1.ListenerReasonHostnameConflict, fmt.Sprintf("another %s listener on port %d has hostname %q", l.spec.Protocol, l.spec.Port, l.hostname)
		default:
			continue
		}
		l.conflicted = condition(string(gwv1.ListenerConditionConflicted), true, string(reason), msg, gen)
		l.accepted = condition(string(gwv1.ListenerConditionAccepted), false, string(reason), msg, gen)
	}
}
