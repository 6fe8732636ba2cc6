package gatewayapi

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// Programming is what the controller learns after translation about one
// Gateway's node group: whether its Envoys took the configuration, and the
// address of its Service.
type Programming struct {
	// Acked is true once the Gateway's Envoys acknowledged the version
	// built from this translation.
	Acked bool
	// Rejected is Envoy's error text when it NACKed that version.
	Rejected string
	// Addresses are the provisioned Service's load-balancer addresses.
	Addresses []gwv1.GatewayStatusAddress
	// AddressProblem says why the Service cannot get an address (IPAM's
	// reason and message: a requested address outside every pool, a pool
	// exhausted), "" when nothing is known to stand in the way.
	AddressProblem string
}

// SetProgrammed completes a Gateway status from Translate with what only
// the controller knows: it sets status.addresses, the Gateway's Programmed
// condition (True once the Envoys ACKed and an address is assigned) and
// the Programmed condition of every served listener. A Gateway whose
// address cannot be assigned is Programmed False (AddressNotAssigned) with
// the reason, whether or not its Envoys answered yet. Listeners that
// translation found invalid keep Programmed=False.
func SetProgrammed(st *gwv1.GatewayStatus, generation int64, p Programming) {
	st.Addresses = p.Addresses
	typ := string(gwv1.GatewayConditionProgrammed)
	var c metav1.Condition
	accepted := findCondition(st.Conditions, string(gwv1.GatewayConditionAccepted))
	switch {
	case accepted == nil || accepted.Status != metav1.ConditionTrue:
		c = condition(typ, false, string(gwv1.GatewayReasonInvalid), "Gateway is not accepted", generation)
	case p.Rejected != "":
		c = condition(typ, false, string(gwv1.GatewayReasonInvalid), "Envoy rejected the configuration: "+p.Rejected, generation)
	case len(p.Addresses) == 0 && p.AddressProblem != "":
		c = condition(typ, false, string(gwv1.GatewayReasonAddressNotAssigned), "the Gateway's Service cannot be given an address: "+p.AddressProblem, generation)
	case !p.Acked:
		c = unknownCondition(typ, string(gwv1.GatewayReasonPending), "no Envoy of this Gateway has acknowledged the configuration yet", generation)
	case len(p.Addresses) == 0:
		c = condition(typ, false, string(gwv1.GatewayReasonAddressNotAssigned), "the Gateway's Service has no load-balancer address yet", generation)
	default:
		c = condition(typ, true, string(gwv1.GatewayReasonProgrammed), "Envoy serves the configuration", generation)
	}
	st.Conditions = setCondition(st.Conditions, c)

	ltyp := string(gwv1.ListenerConditionProgrammed)
	for i := range st.Listeners {
		l := &st.Listeners[i]
		old := findCondition(l.Conditions, ltyp)
		if old != nil && old.Status == metav1.ConditionFalse && old.Reason == string(gwv1.ListenerReasonInvalid) && old.Message != "" && !isEnvoyRejection(old.Message) {
			continue // invalid since translation
		}
		var lc metav1.Condition
		switch {
		case p.Rejected != "":
			lc = condition(ltyp, false, string(gwv1.ListenerReasonInvalid), envoyRejected+p.Rejected, generation)
		case p.Acked:
			lc = condition(ltyp, true, string(gwv1.ListenerReasonProgrammed), "Envoy serves the listener", generation)
		default:
			lc = unknownCondition(ltyp, string(gwv1.ListenerReasonPending), "waiting for the Gateway's Envoys to acknowledge the configuration", generation)
		}
		l.Conditions = setCondition(l.Conditions, lc)
	}
}

const envoyRejected = "Envoy rejected the configuration: "

func isEnvoyRejection(msg string) bool {
	return len(msg) >= len(envoyRejected) && msg[:len(envoyRejected)] == envoyRejected
}

// MergeRouteParents replaces the parent statuses a route holds from
// controller with ours, keeping those other controllers wrote, so that a
// Gateway the route no longer names loses its entry.
func MergeRouteParents(existing, ours []gwv1.RouteParentStatus, controller gwv1.GatewayController) []gwv1.RouteParentStatus {
	out := make([]gwv1.RouteParentStatus, 0, len(existing)+len(ours))
	for _, p := range existing {
		if p.ControllerName != controller {
			out = append(out, p)
		}
	}
	return append(out, ours...)
}
