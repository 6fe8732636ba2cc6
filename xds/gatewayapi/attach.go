package gatewayapi

import (
	"fmt"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// attach binds a compiled route to the managed Gateways its parentRefs
// name and returns one parent status per such parentRef, in spec order.
// ParentRefs to other Gateways (or other kinds) are not Berth's and get no
// status.
// When on is not nil, every listener the route newly attaches to is
// recorded there (see attachMemo).
func attach(cr *compiledRoute, gateways map[nn]*gatewayState, ix *index, controller gwv1.GatewayController, on *[]attachment) []gwv1.RouteParentStatus {
	var out []gwv1.RouteParentStatus
	okRefs, refsReason, refsMsg := cr.backends.resolvedRefs(cr.generation)
	for i := range cr.parentRefs {
		pr := &cr.parentRefs[i]
		if (pr.Group != nil && *pr.Group != gatewayGroup) || (pr.Kind != nil && *pr.Kind != "Gateway") {
			continue
		}
		ns := cr.ns
		if pr.Namespace != nil {
			ns = string(*pr.Namespace)
		}
		gs := gateways[nn{ns, string(pr.Name)}]
		if gs == nil {
			continue
		}
		reason, msg := cr.attachTo(gs, pr, ix, on)
		st := gwv1.RouteParentStatus{ParentRef: *pr, ControllerName: controller}
		st.Conditions = append(st.Conditions,
			condition(string(gwv1.RouteConditionAccepted), reason == gwv1.RouteReasonAccepted, string(reason), msg, cr.generation),
			condition(string(gwv1.RouteConditionResolvedRefs), okRefs, refsReason, refsMsg, cr.generation))
		// The Gateway API: PartiallyInvalid only where the parent accepted
		// the route, with a message that starts with "Dropped Rule".
		if reason == gwv1.RouteReasonAccepted && len(cr.dropped) > 0 {
			st.Conditions = append(st.Conditions, condition(string(gwv1.RouteConditionPartiallyInvalid), true,
				string(gwv1.RouteReasonUnsupportedValue), droppedMessage(cr.dropped), cr.generation))
		}
		out = append(out, st)
	}
	return out
}

// droppedMessage is the PartiallyInvalid message for the dropped rules,
// each as "rules[i]: why".
func droppedMessage(dropped []string) string {
	return "Dropped Rule " + strings.Join(dropped, "; Dropped Rule ")
}

// attachTo binds the route to the listeners of one Gateway that the
// parentRef selects (by sectionName and port), that allow it (namespace
// and kind) and whose hostname intersects the route's; it returns the
// Accepted reason and message.
func (cr *compiledRoute) attachTo(gs *gatewayState, pr *gwv1.ParentReference, ix *index, on *[]attachment) (gwv1.RouteConditionReason, string) {
	if !gs.accepted {
		return gwv1.RouteReasonNoMatchingParent, fmt.Sprintf("Gateway %s/%s is not accepted: %s", gs.gw.Namespace, gs.gw.Name, gs.acceptMessage)
	}
	var selected, allowed []*listenerState
	for _, l := range gs.listeners {
		if pr.SectionName != nil && *pr.SectionName != l.spec.Name {
			continue
		}
		if pr.Port != nil && *pr.Port != l.spec.Port {
			continue
		}
		selected = append(selected, l)
		if l.attachable && l.allowsKind(cr.kind) && l.allowsNamespace(cr.ns, gs.gw.Namespace, ix) {
			allowed = append(allowed, l)
		}
	}
	if len(selected) == 0 {
		return gwv1.RouteReasonNoMatchingParent, "no listener matches the parentRef's sectionName and port"
	}
	if len(allowed) == 0 {
		return gwv1.RouteReasonNotAllowedByListeners, fmt.Sprintf("no listener allows %ss from namespace %s", cr.kind, cr.ns)
	}
	if len(cr.rules) == 0 {
		return gwv1.RouteReasonUnsupportedValue, "no rule can be served: " + strings.Join(cr.dropped, "; ")
	}
	type target struct {
		l     *listenerState
		hosts []string
	}
	var targets []target
	for _, l := range allowed {
		hosts := intersectHostnames(l.hostname, cr.hostnames)
		if len(hosts) == 0 {
			continue
		}
		// An HTTPRoute and a GRPCRoute cannot share a hostname on a
		// listener: the one attached first (routes attach oldest first)
		// keeps it, and the other is not accepted at all on this parent.
		_, other := l.kindClaims(cr.kind)
		for _, h := range hosts {
			if owner := other.conflict(h); owner != "" {
				return gwv1.RouteReasonNotAllowedByListeners, fmt.Sprintf(
					"hostname %s overlaps one that listener %s serves to %s, which takes precedence (older, or first by namespace/name): a listener serves a hostname to HTTPRoutes or to GRPCRoutes, not both; change the hostnames of one",
					hostOrAny(h), l.spec.Name, owner)
			}
		}
		targets = append(targets, target{l, hosts})
	}
	if len(targets) == 0 {
		return gwv1.RouteReasonNoMatchingListenerHostname, "no listener hostname intersects the route's hostnames"
	}
	for _, t := range targets {
		key := cr.precedenceOwner
		if t.l.attached[key] {
			continue
		}
		t.l.attached[key] = true
		own, _ := t.l.kindClaims(cr.kind)
		for _, h := range t.hosts {
			own.claim(h, cr.precedenceOwner)
			t.l.entries = cr.appendEntries(t.l.entries, h, int32(t.l.spec.Port), t.l.spec.Protocol == gwv1.HTTPSProtocolType)
		}
		mergeClusters(gs.clusters, cr.backends.clusters)
		if on != nil {
			*on = append(*on, attachment{gs: gs, l: t.l, hosts: t.hosts})
		}
	}
	return gwv1.RouteReasonAccepted, "route accepted"
}

// kindClaims are the hostnames claimed on the listener by routes of kind,
// and by routes of the other kind.
func (l *listenerState) kindClaims(kind string) (own, other *hostClaims) {
	if kind == "GRPCRoute" {
		return &l.grpcHosts, &l.httpHosts
	}
	return &l.httpHosts, &l.grpcHosts
}

func hostOrAny(h string) string {
	if h == "" {
		return "(any)"
	}
	return h
}

func (l *listenerState) allowsKind(kind string) bool {
	for _, k := range l.kinds {
		if string(k.Kind) == kind {
			return true
		}
	}
	return false
}

func (l *listenerState) allowsNamespace(routeNS, gatewayNS string, ix *index) bool {
	switch l.from {
	case gwv1.NamespacesFromAll:
		return true
	case gwv1.NamespacesFromSame:
		return routeNS == gatewayNS
	case gwv1.NamespacesFromSelector:
		ns := ix.namespaces[routeNS]
		if ns == nil || l.selector == nil {
			return false
		}
		return l.selector.Matches(labels.Set(ns.Labels))
	}
	return false
}

// listenerStatus is the status of one listener after every route attached.
func (l *listenerState) status(gs *gatewayState) gwv1.ListenerStatus {
	gen := gs.gw.Generation
	programmed := unknownCondition(string(gwv1.ListenerConditionProgrammed), string(gwv1.ListenerReasonPending),
		"waiting for the Gateway's Envoys to acknowledge the configuration", gen)
	if !l.served {
		msg := "listener is not served"
		switch {
		case !gs.accepted && gs.acceptMessage != "" && l.accepted.Status == metav1.ConditionTrue:
			msg = "Gateway is not accepted: " + gs.acceptMessage
		case l.accepted.Status != metav1.ConditionTrue:
			msg = l.accepted.Message
		case l.resolvedRefs.Status != metav1.ConditionTrue:
			msg = l.resolvedRefs.Message
		}
		programmed = condition(string(gwv1.ListenerConditionProgrammed), false, string(gwv1.ListenerReasonInvalid), msg, gen)
	}
	return gwv1.ListenerStatus{
		Name:           l.spec.Name,
		SupportedKinds: l.kinds,
		AttachedRoutes: int32(len(l.attached)),
		Conditions:     []metav1.Condition{l.accepted, l.conflicted, l.resolvedRefs, programmed},
	}
}
