package translator

import (
	"cmp"
	"net/netip"
	"slices"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"

	"github.com/berthnet/berth/xds/ir"
)

// Endpoints are the cluster load assignments (EDS resources) of every
// cluster of the group, sorted by cluster name, including those with no
// endpoints: Envoy waits for the assignment of every EDS cluster before it
// warms up, so an empty one must still be sent. Endpoints of clusters the
// group does not have are ignored. Neither argument is modified.
func Endpoints(g *ir.Group, eps ir.Endpoints) []types.Resource {
	names := make([]string, 0, len(g.Clusters))
	for _, c := range g.Clusters {
		names = append(names, c.Name)
	}
	slices.Sort(names)
	out := make([]types.Resource, 0, len(names))
	for i, n := range names {
		if i > 0 && n == names[i-1] {
			continue
		}
		out = append(out, ClusterLoadAssignment(n, eps[n]))
	}
	return out
}

// ClusterLoadAssignment is the EDS resource of one cluster, built from its
// endpoints alone: the hot path of an EndpointSlice change, with no
// translation. Ready endpoints are priority 0; serving but terminating
// ones are priority 1, so Envoy sends them requests only while no ready
// endpoint is left (what Kubernetes asks of proxies), or priority 0 when
// every endpoint is terminating. Endpoints are sorted and deduplicated (a
// ready copy wins over a terminating one), so the same set always gives
// the same resource; an endpoint whose address is not an IP, or whose port
// is 0 or over 65535, cannot be valid and is dropped. eps is not modified.
func ClusterLoadAssignment(cluster string, eps []ir.Endpoint) *endpointv3.ClusterLoadAssignment {
	type ep struct {
		addr        netip.Addr
		port        uint32
		terminating bool
	}
	list := make([]ep, 0, len(eps))
	for _, e := range eps {
		a, err := netip.ParseAddr(e.Address)
		if err != nil || a.Zone() != "" || e.Port == 0 || e.Port > 65535 {
			continue
		}
		list = append(list, ep{addr: a.Unmap(), port: e.Port, terminating: e.Terminating})
	}
	slices.SortFunc(list, func(x, y ep) int {
		if c := x.addr.Compare(y.addr); c != 0 {
			return c
		}
		if c := cmp.Compare(x.port, y.port); c != 0 {
			return c
		}
		// Ready first, so the deduplication below keeps it.
		if x.terminating != y.terminating {
			if y.terminating {
				return -1
			}
			return 1
		}
		return 0
	})
	var ready, terminating []*endpointv3.LbEndpoint
	// The messages of every endpoint in one allocation (six per endpoint
	// otherwise: EDS of 10,000 endpoints is rebuilt on every full sync).
	block := make([]lbEndpointMessages, len(list))
	for i, e := range list {
		if i > 0 && e.addr == list[i-1].addr && e.port == list[i-1].port {
			continue
		}
		lb := block[i].build(e.addr.String(), e.port)
		if e.terminating {
			terminating = append(terminating, lb)
		} else {
			ready = append(ready, lb)
		}
	}
	cla := &endpointv3.ClusterLoadAssignment{ClusterName: cluster}
	if len(ready) > 0 {
		cla.Endpoints = append(cla.Endpoints, &endpointv3.LocalityLbEndpoints{LbEndpoints: ready})
	}
	if len(terminating) > 0 {
		cla.Endpoints = append(cla.Endpoints, &endpointv3.LocalityLbEndpoints{
			LbEndpoints: terminating,
			Priority:    uint32(len(cla.Endpoints)), // 1 behind ready ones, else 0
		})
	}
	return cla
}

// lbEndpointMessages are the messages of one endpoint, allocated together.
type lbEndpointMessages struct {
	lb       endpointv3.LbEndpoint
	host     endpointv3.LbEndpoint_Endpoint
	endpoint endpointv3.Endpoint
	address  corev3.Address
	socket   corev3.Address_SocketAddress
	sa       corev3.SocketAddress
	port     corev3.SocketAddress_PortValue
}

// build links the messages into the endpoint addr:port (TCP) and returns it.
func (m *lbEndpointMessages) build(addr string, port uint32) *endpointv3.LbEndpoint {
	m.port.PortValue = port
	m.sa.Protocol, m.sa.Address, m.sa.PortSpecifier = corev3.SocketAddress_TCP, addr, &m.port
	m.socket.SocketAddress = &m.sa
	m.address.Address = &m.socket
	m.endpoint.Address = &m.address
	m.host.Endpoint = &m.endpoint
	m.lb.HostIdentifier = &m.host
	return &m.lb
}
