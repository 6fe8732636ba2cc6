package netpol

import (
	"net/netip"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// match applies a label selector the API's way: nil selects nothing, an
// empty one selects everything, an invalid one selects nothing. Each
// selector is parsed once per cluster (the compiler asks about every pod
// for every peer).
func (c *cluster) match(sel *metav1.LabelSelector, l map[string]string) bool {
	s, ok := c.sels[sel]
	if !ok {
		var err error
		if s, err = metav1.LabelSelectorAsSelector(sel); err != nil {
			s = labels.Nothing()
		}
		if c.sels == nil {
			c.sels = map[*metav1.LabelSelector]labels.Selector{}
		}
		c.sels[sel] = s
	}
	return s.Matches(labels.Set(l))
}

// peersMatch says whether the other end of a connection is one of a rule's
// peers. An empty list means every peer. policyNS is the policy's namespace,
// where a peer's podSelector alone looks for pods.
func (c *cluster) peersMatch(policyNS string, peers []networkingv1.NetworkPolicyPeer, e end) bool {
	if len(peers) == 0 {
		return true
	}
	for i := range peers {
		if c.peerMatches(policyNS, &peers[i], e) {
			return true
		}
	}
	return false
}

func (c *cluster) peerMatches(policyNS string, p *networkingv1.NetworkPolicyPeer, e end) bool {
	if p.IPBlock != nil {
		if p.PodSelector != nil || p.NamespaceSelector != nil {
			return false // rejected by the API server
		}
		return ipBlockContains(p.IPBlock, e.addr)
	}
	if e.pod == nil {
		return false // selectors only ever select pods
	}
	switch {
	case p.PodSelector == nil && p.NamespaceSelector == nil:
		return false // an empty peer is rejected by the API server
	case p.NamespaceSelector == nil:
		return e.pod.Namespace == policyNS && c.match(p.PodSelector, e.pod.Labels)
	case p.PodSelector == nil:
		return c.match(p.NamespaceSelector, c.namespaceLabels(e.pod.Namespace))
	default: // both in one peer: AND
		return c.match(p.NamespaceSelector, c.namespaceLabels(e.pod.Namespace)) &&
			c.match(p.PodSelector, e.pod.Labels)
	}
}

// ipBlockContains matches an address against cidr minus except. An
// unparsable cidr matches nothing; an unparsable except excludes nothing
// (the API server rejects both).
func ipBlockContains(b *networkingv1.IPBlock, a netip.Addr) bool {
	cidr, err := netip.ParsePrefix(b.CIDR)
	if err != nil || !cidr.Masked().Contains(a) {
		return false
	}
	for _, ex := range b.Except {
		p, err := netip.ParsePrefix(ex)
		if err == nil && p.Masked().Contains(a) {
			return false
		}
	}
	return true
}

// portsMatch says whether a connection's protocol and port are among a
// rule's ports. An empty list means every port of every protocol. dst is the
// destination pod, against whose container ports a named port resolves; nil
// when the destination is outside the pod network, where no named port
// matches.
func portsMatch(ports []networkingv1.NetworkPolicyPort, dst *Pod, conn Conn) bool {
	if len(ports) == 0 {
		return true
	}
	for i := range ports {
		if portMatches(&ports[i], dst, conn) {
			return true
		}
	}
	return false
}

func portMatches(p *networkingv1.NetworkPolicyPort, dst *Pod, conn Conn) bool {
	proto := corev1.ProtocolTCP
	if p.Protocol != nil {
		proto = *p.Protocol
	}
	if proto != protocolOf(conn.Protocol) {
		return false
	}
	if p.Port == nil {
		return true // all ports of the protocol; endPort without port is rejected
	}
	if p.Port.Type == intstr.String { // a named port
		if p.EndPort != nil || dst == nil {
			return false
		}
		cp, ok := dst.NamedPorts[p.Port.StrVal]
		return ok && protocolOf(cp.Protocol) == proto && cp.Port == conn.Port
	}
	lo := p.Port.IntVal
	hi := lo
	if p.EndPort != nil {
		hi = *p.EndPort
	}
	return lo <= conn.Port && conn.Port <= hi
}

// protocolOf applies core/v1's default protocol, TCP.
func protocolOf(p corev1.Protocol) corev1.Protocol {
	if p == "" {
		return corev1.ProtocolTCP
	}
	return p
}
