// Package proxy is Berth's service proxy: it turns Services and their
// endpoints into the nftables ruleset of the table berth-proxy, as data,
// and diffs one ruleset against the next so that a sync applies only what
// changed, in one transaction.
//
// The agent's wiring (watching Services and EndpointSlices) is in
// proxy/kube; the Syncer applies rulesets through internal/nftrules (one
// netlink transaction per sync) and the
// HealthServer answers the health-check node ports.
package proxy

import (
	"fmt"
	"net/netip"
)

// Table is the nftables table the proxy owns alone (family inet).
const Table = "berth-proxy"

// PortKey names one port of one Service.
type PortKey struct {
	Namespace, Name, Port string
	Protocol              string // "tcp", "udp" or "sctp"
}

func (k PortKey) String() string {
	return fmt.Sprintf("%s/%s:%s/%s", k.Namespace, k.Name, k.Port, k.Protocol)
}

// ServicePort is one port of a Service, with every address it answers on.
type ServicePort struct {
	Key        PortKey
	ClusterIPs []netip.Addr
	Port       uint16
	// NodePort is 0 when the Service has none.
	NodePort        uint16
	ExternalIPs     []netip.Addr
	LoadBalancerIPs []netip.Addr
	// ExternalLocal is externalTrafficPolicy: Local; InternalLocal is
	// internalTrafficPolicy: Local.
	ExternalLocal bool
	InternalLocal bool
	// AffinitySeconds is the ClientIP session affinity timeout; 0 is none.
	AffinitySeconds int
	// HealthCheckNodePort answers with this node's endpoint count
	// (externalTrafficPolicy: Local); 0 is none. The same on every port of
	// a Service.
	HealthCheckNodePort uint16
}

// Endpoint is one backend of a ServicePort.
type Endpoint struct {
	Addr        netip.Addr
	Port        uint16
	Ready       bool
	Serving     bool
	Terminating bool
	// Local is true when the endpoint runs on this node.
	Local bool
}

// State is everything the proxy needs to know to build the ruleset.
type State struct {
	Services  []ServicePort
	Endpoints map[PortKey][]Endpoint
	// ClusterCIDRs are the pod ranges: traffic from them to a ClusterIP is
	// not masqueraded (pod to pod through a Service keeps its source).
	ClusterCIDRs []netip.Prefix
	// NodePortCIDRs narrow the node's own addresses that node ports
	// answer on; empty is every address.
	NodePortCIDRs []netip.Prefix
}

// usable picks the endpoints traffic may go to: the ready ones, or, when
// none is ready, the serving-but-terminating ones (as kube-proxy does).
func usable(eps []Endpoint, localOnly bool) []Endpoint {
	var ready, terminating []Endpoint
	for _, e := range eps {
		if localOnly && !e.Local {
			continue
		}
		switch {
		case e.Ready && !e.Terminating:
			ready = append(ready, e)
		case e.Serving && e.Terminating:
			terminating = append(terminating, e)
		}
	}
	if len(ready) > 0 {
		return ready
	}
	return terminating
}
