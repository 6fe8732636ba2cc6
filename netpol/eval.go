// Package netpol holds Berth's NetworkPolicy enforcement. This file is its
// oracle: a pure evaluator of the Kubernetes NetworkPolicy spec that says
// whether one connection is allowed, and why, from plain data. The compiled
// nftables rules are checked against it.
//
// Decisions where the spec leaves room:
//   - ipBlock matches by address, pod addresses included: a peer
//     {ipBlock: 10.0.0.0/8} admits a pod whose IP is in it, whatever its labels.
//   - Traffic from the destination pod's own node (Conn.SrcNode equal to the
//     pod's Node) is always allowed in; it is not subject to anyone's egress.
//     Traffic from another node is an outside address, matched only by ipBlock.
//   - Hairpin traffic (a pod to itself) is evaluated by the rules like any
//     other pair; upstream's e2e leaves it undefined, Verdict.Hairpin marks it.
//   - A namespace always carries the label kubernetes.io/metadata.name, as the
//     API server guarantees, even when the caller's Namespace lacks it.
//   - Input the API server would reject (see Validate) never panics: the
//     broken selector, peer or port matches nothing.
package netpol

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// Namespace is the part of a core/v1 Namespace that policies look at.
type Namespace struct {
	Name   string
	Labels map[string]string
}

// Pod is the part of a core/v1 Pod that policies look at. Pods on the host
// network do not belong here: their traffic is the node's (Conn.SrcNode).
type Pod struct {
	Namespace string
	Name      string
	Labels    map[string]string
	IPs       []netip.Addr
	Node      string
	// NamedPorts are the pod's named container ports, from all its containers.
	NamedPorts map[string]ContainerPort
}

// ContainerPort is what a named port resolves to on one pod.
type ContainerPort struct {
	Protocol corev1.Protocol // "" means TCP, as in core/v1
	Port     int32
}

// Conn is one connection attempt as seen on the wire.
type Conn struct {
	// Src is the source address: a pod's IP (the pod is found by it) or an
	// address outside the pod network.
	Src netip.Addr
	// SrcNode, when set, says the source is the host network of that node
	// (kubelet probes, host-network pods); Src is then the node's address and
	// is never taken for a pod.
	SrcNode string
	// Dst is the destination address, a pod's IP or an outside address.
	Dst      netip.Addr
	Protocol corev1.Protocol // "" means TCP
	Port     int32
}

// String prints the connection as "10.0.0.1 -> 10.0.1.2:80/TCP".
func (c Conn) String() string {
	src := c.Src.String()
	if c.SrcNode != "" {
		src = "node " + c.SrcNode + " (" + src + ")"
	}
	return fmt.Sprintf("%s -> %s/%s", src, netip.AddrPortFrom(c.Dst, uint16(c.Port)), protocolOf(c.Protocol))
}

// RuleRef names one rule of one policy: "x/allow-b ingress[0]".
type RuleRef struct {
	Policy string // namespace/name
	Rule   int    // index in spec.ingress or spec.egress
}

// Side is the verdict of one direction: the egress side of the source or the
// ingress side of the destination.
type Side struct {
	// Pod is the pod at this end ("namespace/name"), empty when that end is
	// not a pod: then no policy applies and the side allows.
	Pod string
	// Isolating are the policies that select Pod and have this direction in
	// their policyTypes, sorted. Empty means the pod is not isolated.
	Isolating []string
	// AllowedBy are all the rules of the isolating policies that match.
	AllowedBy []RuleRef
	// FromNode is set on the ingress side when the source is the pod's own node.
	FromNode bool
	Allowed  bool
}

// Verdict is the answer for one Conn.
type Verdict struct {
	Conn    Conn
	Allowed bool
	Egress  Side // the source's
	Ingress Side // the destination's
	// Hairpin is set when the source and destination are the same pod.
	Hairpin bool
}

// String explains the verdict on one line, for truth-table diffs.
func (v Verdict) String() string {
	word := "denied"
	if v.Allowed {
		word = "allowed"
	}
	return fmt.Sprintf("%s %s: egress %s; ingress %s", v.Conn, word, v.Egress.explain("egress"), v.Ingress.explain("ingress"))
}

func (s Side) explain(dir string) string {
	switch {
	case s.Pod == "":
		return "not a pod"
	case s.FromNode:
		return s.Pod + " from its own node"
	case len(s.Isolating) == 0:
		return s.Pod + " not isolated"
	case len(s.AllowedBy) == 0:
		return fmt.Sprintf("%s isolated by %s, no rule matches", s.Pod, strings.Join(s.Isolating, ","))
	}
	refs := make([]string, len(s.AllowedBy))
	for i, r := range s.AllowedBy {
		refs[i] = fmt.Sprintf("%s %s[%d]", r.Policy, dir, r.Rule)
	}
	return s.Pod + " allowed by " + strings.Join(refs, ",")
}

// Allowed says whether the policies let conn through: the egress side of the
// source (when it is a pod isolated for egress) and the ingress side of the
// destination (when it is a pod isolated for ingress) must both allow it.
func Allowed(policies []networkingv1.NetworkPolicy, namespaces []Namespace, pods []Pod, conn Conn) Verdict {
	c := newCluster(namespaces, pods)
	return c.allowed(policies, conn)
}

// cluster indexes the input for one or many evaluations.
type cluster struct {
	nsLabels map[string]map[string]string
	byIP     map[netip.Addr]*Pod
	sorted   []podAddr // byIP in address order, built on first use
	// sels are parsed selectors by address (see match).
	sels map[*metav1.LabelSelector]labels.Selector
}

func newCluster(namespaces []Namespace, pods []Pod) *cluster {
	c := &cluster{nsLabels: map[string]map[string]string{}, byIP: map[netip.Addr]*Pod{}}
	for _, ns := range namespaces {
		l := make(map[string]string, len(ns.Labels)+1)
		for k, v := range ns.Labels {
			l[k] = v
		}
		l[corev1.LabelMetadataName] = ns.Name
		c.nsLabels[ns.Name] = l
	}
	for i := range pods {
		for _, ip := range pods[i].IPs {
			ip = ip.Unmap()
			if _, dup := c.byIP[ip]; !dup { // the first pod wins; Validate reports the clash
				c.byIP[ip] = &pods[i]
			}
		}
	}
	return c
}

// namespaceLabels returns a namespace's labels, including its name label
// when the caller did not list the namespace.
func (c *cluster) namespaceLabels(ns string) map[string]string {
	if l, ok := c.nsLabels[ns]; ok {
		return l
	}
	return map[string]string{corev1.LabelMetadataName: ns}
}

func (c *cluster) allowed(policies []networkingv1.NetworkPolicy, conn Conn) Verdict {
	conn.Src, conn.Dst = conn.Src.Unmap(), conn.Dst.Unmap()
	var src *Pod
	if conn.SrcNode == "" {
		src = c.byIP[conn.Src]
	}
	dst := c.byIP[conn.Dst]
	v := Verdict{Conn: conn, Hairpin: src != nil && src == dst}
	srcEnd := end{addr: conn.Src, pod: src}
	dstEnd := end{addr: conn.Dst, pod: dst}
	v.Egress = c.side(policies, networkingv1.PolicyTypeEgress, src, dstEnd, conn)
	v.Ingress = c.side(policies, networkingv1.PolicyTypeIngress, dst, srcEnd, conn)
	if dst != nil && conn.SrcNode != "" && conn.SrcNode == dst.Node {
		v.Ingress.FromNode, v.Ingress.Allowed = true, true
	}
	v.Allowed = v.Egress.Allowed && v.Ingress.Allowed
	return v
}

// end is one end of a connection: its address and, if it is one, its pod.
type end struct {
	addr netip.Addr
	pod  *Pod
}

// side evaluates one direction for pod (the source for egress, the
// destination for ingress); peer is the other end.
func (c *cluster) side(policies []networkingv1.NetworkPolicy, dir networkingv1.PolicyType, pod *Pod, peer end, conn Conn) Side {
	if pod == nil {
		return Side{Allowed: true}
	}
	s := Side{Pod: pod.Namespace + "/" + pod.Name}
	// The named ports of the destination: the pod itself on ingress, the
	// peer (if it is a pod) on egress.
	dstPod := pod
	if dir == networkingv1.PolicyTypeEgress {
		dstPod = peer.pod
	}
	for i := range policies {
		p := &policies[i]
		if p.Namespace != pod.Namespace || !hasType(p, dir) || !c.match(&p.Spec.PodSelector, pod.Labels) {
			continue
		}
		name := p.Namespace + "/" + p.Name
		s.Isolating = append(s.Isolating, name)
		if dir == networkingv1.PolicyTypeIngress {
			for r, rule := range p.Spec.Ingress {
				if c.peersMatch(p.Namespace, rule.From, peer) && portsMatch(rule.Ports, dstPod, conn) {
					s.AllowedBy = append(s.AllowedBy, RuleRef{Policy: name, Rule: r})
				}
			}
		} else {
			for r, rule := range p.Spec.Egress {
				if c.peersMatch(p.Namespace, rule.To, peer) && portsMatch(rule.Ports, dstPod, conn) {
					s.AllowedBy = append(s.AllowedBy, RuleRef{Policy: name, Rule: r})
				}
			}
		}
	}
	slices.Sort(s.Isolating)
	slices.SortFunc(s.AllowedBy, func(a, b RuleRef) int {
		if c := strings.Compare(a.Policy, b.Policy); c != 0 {
			return c
		}
		return a.Rule - b.Rule
	})
	s.Allowed = len(s.Isolating) == 0 || len(s.AllowedBy) > 0
	return s
}

// PolicyTypes returns the directions a policy isolates, with the API
// server's defaulting when spec.policyTypes is empty: Ingress always, Egress
// when the policy has egress rules.
func PolicyTypes(p *networkingv1.NetworkPolicy) []networkingv1.PolicyType {
	if len(p.Spec.PolicyTypes) > 0 {
		return p.Spec.PolicyTypes
	}
	if len(p.Spec.Egress) > 0 {
		return []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress}
	}
	return []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}
}

func hasType(p *networkingv1.NetworkPolicy, dir networkingv1.PolicyType) bool {
	return slices.Contains(PolicyTypes(p), dir)
}
