// Package xds joins the stages of Berth's xDS pipeline: Kubernetes
// resources -> gatewayapi.Translate -> IR -> translator.Translate -> Envoy
// resources, with the ports the provisioned fleet binds. The controller and
// the end-to-end golden tests both go through Build, so what the tests
// show is what Envoy is served.
package xds

import (
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/berthnet/berth/xds/ir"
	"github.com/berthnet/berth/xds/provision"
	"github.com/berthnet/berth/xds/translator"
)

// Build returns every resource one node group is served, endpoints
// included.
func Build(g *ir.Group, eps ir.Endpoints) (translator.Resources, error) {
	bound := BindPorts(g)
	res, err := translator.Translate(bound)
	if err != nil {
		return nil, err
	}
	res[resourcev3.EndpointType] = translator.Endpoints(bound, eps)
	return res, nil
}

// BindPorts returns g with each listener on the port its Envoy binds
// (provision.ContainerPort: ports below 1024 move up by 10000, so Envoy runs
// without NET_BIND_SERVICE; the fleet's Service maps the listener's own
// port to it). g is not changed.
func BindPorts(g *ir.Group) *ir.Group {
	out := *g
	out.HTTP = make([]*ir.HTTPListener, len(g.HTTP))
	for i, l := range g.HTTP {
		c := *l
		c.Port = uint32(provision.ContainerPort(int32(l.Port)))
		out.HTTP[i] = &c
	}
	return &out
}
