package gatewayapi

import (
	"sort"

	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/berthnet/berth/xds/ir"
)

// Endpoints computes the endpoints of each cluster from EndpointSlices (by
// their kubernetes.io/service-name label and the Service port's name). It
// does not need a translation: the controller runs it on every slice
// change with the clusters of the last one, in time linear in clusters
// plus slices.
//
// Ready endpoints are kept. Endpoints that are serving but terminating are
// kept too, marked Terminating, whether or not ready ones exist: the second
// stage gives them a lower priority, so Envoy sends them traffic only when
// the ready ones are gone (what kube-proxy does), and connections to a pod
// rolling out drain instead of failing. Others are dropped. An address in
// two slices (while a slice is being replaced) counts once, ready first.
// Every cluster of clusters has an entry, empty when it has no endpoint.
func Endpoints(clusters []*ir.Cluster, slices []discoveryv1.EndpointSlice) ir.Endpoints {
	bySvc := make(map[nn][]*discoveryv1.EndpointSlice, len(clusters))
	for _, c := range clusters {
		bySvc[nn{c.Namespace, c.Service}] = nil
	}
	for i := range slices {
		s := &slices[i]
		if s.AddressType == discoveryv1.AddressTypeFQDN {
			continue
		}
		k := nn{s.Namespace, s.Labels[discoveryv1.LabelServiceName]}
		if v, ok := bySvc[k]; ok {
			bySvc[k] = append(v, s)
		}
	}
	out := make(ir.Endpoints, len(clusters))
	for _, c := range clusters {
		out[c.Name] = clusterEndpoints(c, bySvc[nn{c.Namespace, c.Service}])
	}
	return out
}

func clusterEndpoints(c *ir.Cluster, slices []*discoveryv1.EndpointSlice) []ir.Endpoint {
	eps := []ir.Endpoint{}
	seen := map[ir.Endpoint]int{} // address and port -> index in eps
	for _, s := range slices {
		port, ok := slicePort(s, c.PortName)
		if !ok {
			continue
		}
		for i := range s.Endpoints {
			e := &s.Endpoints[i]
			cond := e.Conditions
			ready := cond.Ready == nil || *cond.Ready
			terminating := cond.Terminating != nil && *cond.Terminating
			serving := cond.Serving == nil && ready || cond.Serving != nil && *cond.Serving
			if terminating {
				// A terminating endpoint is never ready, only serving.
				ready = false
			}
			if !ready && !(terminating && serving) {
				continue
			}
			for _, a := range e.Addresses {
				key := ir.Endpoint{Address: a, Port: port}
				if j, dup := seen[key]; dup {
					if ready {
						eps[j].Terminating = false
					}
					continue
				}
				seen[key] = len(eps)
				eps = append(eps, ir.Endpoint{Address: a, Port: port, Terminating: !ready})
			}
		}
	}
	sort.Slice(eps, func(i, j int) bool {
		if eps[i].Address != eps[j].Address {
			return eps[i].Address < eps[j].Address
		}
		return eps[i].Port < eps[j].Port
	})
	return eps
}

// slicePort is the port a slice gives for the Service port named name (""
// for the Service's only, unnamed port).
func slicePort(s *discoveryv1.EndpointSlice, name string) (uint32, bool) {
	for _, p := range s.Ports {
		pn := ""
		if p.Name != nil {
			pn = *p.Name
		}
		if pn == name && p.Port != nil && *p.Port > 0 {
			return uint32(*p.Port), true
		}
	}
	return 0, false
}
