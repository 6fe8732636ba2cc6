package gatewayapi

import (
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/berthnet/berth/xds/ir"
)

// appProtocolH2C marks a Service port that speaks cleartext HTTP/2.
const appProtocolH2C = "kubernetes.io/h2c"

// backends resolves the backend references of one route, collecting the
// clusters they name and the first reason one failed (for the route's
// ResolvedRefs condition). The same resolver serves every rule of the route.
type backends struct {
	ix       *index
	kind, ns string
	grpc     bool
	clusters map[string]*ir.Cluster
	reason   gwv1.RouteConditionReason
	problems []string
}

func newBackends(ix *index, kind, ns string, grpc bool) *backends {
	return &backends{ix: ix, kind: kind, ns: ns, grpc: grpc}
}

func (b *backends) fail(reason gwv1.RouteConditionReason, format string, args ...any) {
	if b.reason == "" {
		b.reason = reason
	}
	b.problems = append(b.problems, fmt.Sprintf(format, args...))
}

// resolve returns the cluster a backend reference names, or "" when it
// cannot be used: not a core Service (InvalidKind), in another namespace
// without a ReferenceGrant (RefNotPermitted), missing or without that port
// (BackendNotFound), or speaking a protocol Berth cannot send
// (UnsupportedProtocol).
func (b *backends) resolve(r *gwv1.BackendObjectReference) string {
	group, kind := coreGroup, "Service"
	if r.Group != nil {
		group = string(*r.Group)
	}
	if r.Kind != nil {
		kind = string(*r.Kind)
	}
	ns := b.ns
	if r.Namespace != nil {
		ns = string(*r.Namespace)
	}
	name := string(r.Name)
	where := ns + "/" + name
	if ns != b.ns {
		b.ix.recordGrants(ns)
	}
	b.ix.recordService(ns, name)
	if group != coreGroup || kind != "Service" {
		b.fail(gwv1.RouteReasonInvalidKind, "backend %s: kind %s/%s is not supported; use a Service", where, group, kind)
		return ""
	}
	if !b.ix.permitted(ref{gatewayGroup, b.kind, b.ns, coreGroup, "Service", ns, name}) {
		b.fail(gwv1.RouteReasonRefNotPermitted, "backend %s: no ReferenceGrant in %s allows %ss from %s to use it", where, ns, b.kind, b.ns)
		return ""
	}
	if r.Port == nil {
		b.fail(gwv1.RouteReasonBackendNotFound, "backend %s: no port; a Service backend needs one", where)
		return ""
	}
	svc := b.ix.services[nn{ns, name}]
	if svc == nil {
		b.fail(gwv1.RouteReasonBackendNotFound, "backend %s: no such Service", where)
		return ""
	}
	var port *corev1.ServicePort
	for i := range svc.Spec.Ports {
		if svc.Spec.Ports[i].Port == *r.Port && svc.Spec.Ports[i].Protocol != corev1.ProtocolUDP && svc.Spec.Ports[i].Protocol != corev1.ProtocolSCTP {
			port = &svc.Spec.Ports[i]
			break
		}
	}
	if port == nil {
		b.fail(gwv1.RouteReasonBackendNotFound, "backend %s: Service has no TCP port %d", where, *r.Port)
		return ""
	}
	if svc.Spec.Type == corev1.ServiceTypeExternalName {
		b.fail(gwv1.RouteReasonBackendNotFound, "backend %s: ExternalName Services are not supported", where)
		return ""
	}
	protocol, err := clusterProtocol(port.AppProtocol, b.grpc)
	if err != nil {
		b.fail(gwv1.RouteReasonUnsupportedProtocol, "backend %s port %d: %v", where, *r.Port, err)
		return ""
	}
	c := b.ix.cluster(ns, name, port, protocol)
	if b.clusters == nil {
		b.clusters = make(map[string]*ir.Cluster, 1)
	}
	b.clusters[c.Name] = c
	return c.Name
}

// clusterProtocol is HTTP2 for gRPC backends and kubernetes.io/h2c ports,
// HTTP for plain ones; TLS to the backend (https, kubernetes.io/wss) is not
// supported.
func clusterProtocol(appProtocol *string, grpc bool) (ir.Protocol, error) {
	p := ""
	if appProtocol != nil {
		p = strings.ToLower(*appProtocol)
	}
	switch p {
	case "", "http", "kubernetes.io/ws":
		if grpc {
			return ir.HTTP2, nil
		}
		return ir.HTTP, nil
	case appProtocolH2C, "h2c", "grpc":
		return ir.HTTP2, nil
	}
	return "", fmt.Errorf("appProtocol %q is not supported; use http or %s", p, appProtocolH2C)
}

// weightedBackends resolves a rule's backendRefs. It returns nil when no
// backend with weight resolves: the rule then answers 500 itself.
func (b *backends) weighted(refs []gwv1.BackendRef) []*ir.Backend {
	var out []*ir.Backend
	var resolved uint32
	for i := range refs {
		w := uint32(1)
		if refs[i].Weight != nil {
			w = uint32(max(*refs[i].Weight, 0))
		}
		c := b.resolve(&refs[i].BackendObjectReference)
		if c != "" {
			resolved += w
		}
		out = append(out, &ir.Backend{Cluster: c, Weight: w})
	}
	if resolved == 0 {
		return nil
	}
	return out
}

// mergeClusters adds a route's clusters to a group's. A Service port used
// both by an HTTPRoute and a GRPCRoute is one cluster: HTTP/2 wins, since a
// port that serves gRPC speaks HTTP/2.
func mergeClusters(dst map[string]*ir.Cluster, src map[string]*ir.Cluster) {
	for name, c := range src {
		if old, ok := dst[name]; ok && old.Protocol == ir.HTTP2 {
			continue
		}
		dst[name] = c
	}
}

// statusReason is the ResolvedRefs condition of a route: True, or False
// with the first failure's reason and every problem.
func (b *backends) resolvedRefs(gen int64) (bool, string, string) {
	if b.reason == "" {
		return true, string(gwv1.RouteReasonResolvedRefs), "all references resolved"
	}
	return false, string(b.reason), strings.Join(b.problems, "; ")
}
