package netpol

import (
	"crypto/sha256"
	"encoding/base32"
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/berthnet/berth/internal/nftrules"
)

// Input is what one node's ruleset is compiled from.
type Input struct {
	Policies   []networkingv1.NetworkPolicy
	Namespaces []Namespace
	// Pods are all the cluster's pods that have addresses and are not on
	// the host network; the ones on Node are this node's.
	Pods []Pod
	Node string
	// NodeIPs are this node's own addresses: traffic from them is allowed.
	NodeIPs []netip.Addr
	// PodCIDRs are this node's pod ranges. While any policy exists, an
	// address in them that is no known pod is dropped both ways.
	PodCIDRs []netip.Prefix
}

// Compile computes the ruleset of one node: a chain per local pod and
// direction in which policies isolate it, with one rule per matching
// policy rule and family, and the sets those rules look peers up in. It is
// deterministic, so a diff against the last ruleset is empty when nothing
// changed. The compiled rules allow exactly what Allowed allows.
func Compile(in Input) nftrules.Ruleset {
	rs := emptyRuleset()
	c := newCluster(in.Namespaces, in.Pods)
	pols := slices.Clone(in.Policies)
	slices.SortFunc(pols, func(a, b networkingv1.NetworkPolicy) int {
		return strings.Compare(a.Namespace+"/"+a.Name, b.Namespace+"/"+b.Name)
	})
	for _, a := range in.NodeIPs {
		addSetElem(&rs, setNodeIPs4, setNodeIPs6, a.Unmap().Is4(), a.Unmap().String())
	}
	if len(pols) > 0 {
		for _, p := range in.PodCIDRs {
			addSetElem(&rs, setLocalCIDRs4, setLocalCIDRs6, p.Addr().Unmap().Is4(), p.Masked().String())
		}
	}
	counters := map[string]bool{}
	b := &builder{rs: &rs, c: c}
	for i := range in.Pods {
		pod := &in.Pods[i]
		if pod.Node != in.Node || len(pod.IPs) == 0 {
			continue
		}
		for _, dir := range []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress} {
			verdict := "return"
			if rules, isolating := b.podChain(pols, pod, dir); isolating != nil {
				chain := objName(chainPrefix(dir), pod.Namespace, pod.Name, "")
				rules = append(rules, dropRule(pod, isolating))
				for _, p := range isolating[:min(len(isolating), maxCountersPerRule)] {
					counters[policyCounter(p)] = true
				}
				rs.Chains[chain] = texts(rules)
				verdict = "goto " + chain
			}
			m4, m6 := mapIngressPods4, mapIngressPods6
			if dir == networkingv1.PolicyTypeEgress {
				m4, m6 = mapEgressPods4, mapEgressPods6
			}
			for _, ip := range pod.IPs {
				ip = ip.Unmap()
				m := m6
				if ip.Is4() {
					m = m4
				}
				rs.Maps[m].Elements[ip.String()] = verdict
			}
		}
	}
	for name := range counters {
		rs.Counters = append(rs.Counters, name)
	}
	slices.Sort(rs.Counters)
	for name, s := range rs.Sets {
		s.Elements = sortedUnique(s.Elements)
		rs.Sets[name] = s
	}
	return rs
}

func chainPrefix(dir networkingv1.PolicyType) string {
	if dir == networkingv1.PolicyTypeEgress {
		return "eg-"
	}
	return "in-"
}

// policyCounter names the counter of the packets dropped at the pods a
// policy isolates.
func policyCounter(policy string) string {
	ns, name, _ := strings.Cut(policy, "/")
	return objName("drop-", ns, name, "")
}

// dropRule ends a pod's chain: nothing allowed it. It counts the packet on
// each isolating policy's counter (the first maxCountersPerRule).
func dropRule(pod *Pod, isolating []string) rule {
	var b strings.Builder
	for _, p := range isolating[:min(len(isolating), maxCountersPerRule)] {
		fmt.Fprintf(&b, "counter name %q ", policyCounter(p))
	}
	b.WriteString("drop")
	return rule{text: b.String(), comment: shortComment(pod.Namespace + "/" + pod.Name + " isolated by " + strings.Join(isolating, ","))}
}

// maxComment is the kernel's limit on a rule comment, in bytes.
const maxComment = 128

// shortComment cuts a comment to what the kernel takes, marking the cut.
func shortComment(c string) string {
	if len(c) <= maxComment {
		return c
	}
	return c[:maxComment-3] + "..."
}

func addSetElem(rs *nftrules.Ruleset, set4, set6 string, is4 bool, elem string) {
	name := set6
	if is4 {
		name = set4
	}
	s := rs.Sets[name]
	s.Elements = append(s.Elements, elem)
	rs.Sets[name] = s
}

// builder adds the sets the pods' chains refer to, once each.
type builder struct {
	rs *nftrules.Ruleset
	c  *cluster
	// names caches set names by what they are computed from (the first
	// peer's address, the namespace, the family, named ports): hashing the
	// peers for every pod's every rule would cost more than the rest.
	names map[setKey]string
}

type setKey struct {
	ns    string
	peer  *networkingv1.NetworkPolicyPeer
	n     int
	named *networkingv1.NetworkPolicyPort
	fam   string
}

// cachedName returns the set name for key, computing it once.
func (b *builder) cachedName(k setKey, name func() string) string {
	if n, ok := b.names[k]; ok {
		return n
	}
	if b.names == nil {
		b.names = map[setKey]string{}
	}
	n := name()
	b.names[k] = n
	return n
}

func firstPeer(peers []networkingv1.NetworkPolicyPeer) *networkingv1.NetworkPolicyPeer {
	if len(peers) == 0 {
		return nil
	}
	return &peers[0]
}

// podChain returns the rules of a pod's chain in one direction and the
// policies that isolate it there, nil when none does.
func (b *builder) podChain(pols []networkingv1.NetworkPolicy, pod *Pod, dir networkingv1.PolicyType) ([]rule, []string) {
	var rules []rule
	var isolating []string
	for i := range pols {
		p := &pols[i]
		if p.Namespace != pod.Namespace || !hasType(p, dir) || !b.c.match(&p.Spec.PodSelector, pod.Labels) {
			continue
		}
		isolating = append(isolating, p.Namespace+"/"+p.Name)
		if dir == networkingv1.PolicyTypeIngress {
			for r, rule := range p.Spec.Ingress {
				rules = append(rules, b.ingressRules(p, r, rule.From, rule.Ports, pod)...)
			}
		} else {
			for r, rule := range p.Spec.Egress {
				rules = append(rules, b.egressRules(p, r, rule.To, rule.Ports)...)
			}
		}
	}
	return rules, isolating
}

// ingressRules compile one ingress rule for the pod it protects: named
// ports resolve against that pod.
func (b *builder) ingressRules(p *networkingv1.NetworkPolicy, r int, peers []networkingv1.NetworkPolicyPeer, ports []networkingv1.NetworkPolicyPort, dst *Pod) []rule {
	comment := shortComment(fmt.Sprintf("%s/%s ingress[%d]", p.Namespace, p.Name, r))
	match, ok := b.portMatch(ports, dst)
	if !ok {
		return nil // no port of the rule exists on this pod
	}
	if len(peers) == 0 {
		return []rule{{text: join(match, "return"), comment: comment}}
	}
	var out []rule
	for _, fam := range []string{"ip", "ip6"} {
		set := b.peerSet(p, peers, fam)
		out = append(out, rule{text: join(fam+" saddr @"+set, match, "return"), comment: comment})
	}
	return out
}

// egressRules compile one egress rule: numeric ports are matched with the
// peer set, named ports through a set of (peer address, protocol, port)
// resolved on each peer pod.
func (b *builder) egressRules(p *networkingv1.NetworkPolicy, r int, peers []networkingv1.NetworkPolicyPeer, ports []networkingv1.NetworkPolicyPort) []rule {
	comment := shortComment(fmt.Sprintf("%s/%s egress[%d]", p.Namespace, p.Name, r))
	var numeric, named []networkingv1.NetworkPolicyPort
	var firstNamed *networkingv1.NetworkPolicyPort // identifies the rule's named ports (cache key)
	for i, port := range ports {
		if port.Port != nil && port.Port.Type == intstr.String {
			if firstNamed == nil {
				firstNamed = &ports[i]
			}
			named = append(named, port)
		} else {
			numeric = append(numeric, port)
		}
	}
	var out []rule
	if len(ports) == 0 || len(numeric) > 0 {
		match, ok := b.portMatch(numeric, nil)
		if ok {
			if len(peers) == 0 {
				out = append(out, rule{text: join(match, "return"), comment: comment})
			} else {
				for _, fam := range []string{"ip", "ip6"} {
					set := b.peerSet(p, peers, fam)
					out = append(out, rule{text: join(fam+" daddr @"+set, match, "return"), comment: comment})
				}
			}
		}
	}
	if len(named) > 0 {
		for _, fam := range []string{"ip", "ip6"} {
			set := b.namedSet(p, peers, named, firstNamed, fam)
			out = append(out, rule{text: fam + " daddr . meta l4proto . th dport @" + set + " return", comment: comment})
		}
	}
	return out
}

func join(parts ...string) string {
	var out []string
	for _, p := range parts {
		if p != "" {
			out = append(out, p)
		}
	}
	return strings.Join(out, " ")
}

// portMatch is the match of a port list, "" for every port of every
// protocol; ok is false when the list matches nothing. Named ports resolve
// against dst; with no dst they match nothing. One port is matched in the
// rule; more go in a named set shared by every rule with the same ports
// (an anonymous set per rule would cost the kernel a walk of all sets for
// each: quadratic).
func (b *builder) portMatch(ports []networkingv1.NetworkPolicyPort, dst *Pod) (string, bool) {
	if len(ports) == 0 {
		return "", true
	}
	var rs []portSpan
	for i := range ports {
		if pr, ok := resolvePort(&ports[i], dst); ok {
			rs = append(rs, pr)
		}
	}
	if len(rs) == 0 {
		return "", false
	}
	elems := mergePorts(rs)
	if len(elems) == 1 {
		proto, port, _ := strings.Cut(elems[0], " . ")
		if port == "0-65535" {
			return "meta l4proto " + proto, true
		}
		return proto + " dport " + port, true
	}
	h := sha256.Sum256([]byte(strings.Join(elems, ",")))
	name := "ports-" + strings.ToLower(base32.StdEncoding.EncodeToString(h[:10]))
	b.rs.Sets[name] = nftrules.Set{Type: "inet_proto . inet_service", Interval: true, Elements: elems}
	return "meta l4proto . th dport @" + name, true
}

// nftProto is the nft name of a protocol the spec allows.
func nftProto(p corev1.Protocol) (string, bool) {
	switch protocolOf(p) {
	case corev1.ProtocolTCP:
		return "tcp", true
	case corev1.ProtocolUDP:
		return "udp", true
	case corev1.ProtocolSCTP:
		return "sctp", true
	}
	return "", false
}

// resolvePort reads one policy port as portMatches does.
func resolvePort(p *networkingv1.NetworkPolicyPort, dst *Pod) (portSpan, bool) {
	proto := corev1.ProtocolTCP
	if p.Protocol != nil {
		proto = *p.Protocol
	}
	name, ok := nftProto(proto)
	if !ok {
		return portSpan{}, false
	}
	if p.Port == nil {
		return portSpan{name, 0, 65535}, true
	}
	if p.Port.Type == intstr.String {
		if p.EndPort != nil || dst == nil {
			return portSpan{}, false
		}
		cp, ok := dst.NamedPorts[p.Port.StrVal]
		if !ok || protocolOf(cp.Protocol) != proto || cp.Port < 0 || cp.Port > 65535 {
			return portSpan{}, false
		}
		return portSpan{name, cp.Port, cp.Port}, true
	}
	lo, hi := p.Port.IntVal, p.Port.IntVal
	if p.EndPort != nil {
		hi = *p.EndPort
	}
	lo, hi = max(lo, 0), min(hi, 65535)
	if hi < lo {
		return portSpan{}, false
	}
	return portSpan{name, lo, hi}, true
}

// peerSet adds (once) and names the set of a rule's peer addresses of
// one family: the pods its selectors match and its ipBlocks. It is an
// interval set when the rule has an ipBlock. Rules with the same peers in
// the same namespace share the set: its name is a hash of them, so a change
// of who the peers are is a change of elements, never of rules.
func (b *builder) peerSet(p *networkingv1.NetworkPolicy, peers []networkingv1.NetworkPolicyPeer, fam string) string {
	interval := slices.ContainsFunc(peers, func(pp networkingv1.NetworkPolicyPeer) bool { return pp.IPBlock != nil })
	v4 := fam == "ip"
	suffix := map[bool]string{true: "-v4", false: "-v6"}[v4]
	if interval {
		suffix += "i"
	}
	name := b.cachedName(setKey{ns: p.Namespace, peer: firstPeer(peers), n: len(peers), fam: suffix}, func() string {
		return "peers-" + defHash(p.Namespace, peers) + suffix
	})
	if _, done := b.rs.Sets[name]; done {
		return name
	}
	var ranges []addrRange
	var addrs []string
	for i := range peers {
		peer := &peers[i]
		if peer.IPBlock != nil {
			if peer.PodSelector != nil || peer.NamespaceSelector != nil {
				continue // matches nothing, as in the evaluator
			}
			for _, rg := range blockRanges(peer.IPBlock) {
				if rg.lo.Is4() == v4 {
					ranges = append(ranges, rg)
				}
			}
			continue
		}
		for _, pod := range b.c.podsByIP() {
			if pod.ip.Is4() == v4 && b.c.peerMatches(p.Namespace, peer, end{addr: pod.ip, pod: pod.pod}) {
				if interval {
					ranges = append(ranges, addrRange{pod.ip, pod.ip})
				} else {
					addrs = append(addrs, pod.ip.String())
				}
			}
		}
	}
	s := nftrules.Set{Type: "ipv4_addr", Interval: interval}
	if !v4 {
		s.Type = "ipv6_addr"
	}
	if interval {
		for _, rg := range mergeRanges(ranges) {
			s.Elements = append(s.Elements, rg.String())
		}
	} else {
		s.Elements = addrs
	}
	b.rs.Sets[name] = s
	return name
}

// namedSet adds (once) and names the set of (address, protocol, port) of
// the peer pods on which an egress rule's named ports resolve.
func (b *builder) namedSet(p *networkingv1.NetworkPolicy, peers []networkingv1.NetworkPolicyPeer, named []networkingv1.NetworkPolicyPort, firstNamed *networkingv1.NetworkPolicyPort, fam string) string {
	v4 := fam == "ip"
	fs := map[bool]string{true: "-v4", false: "-v6"}[v4]
	name := b.cachedName(setKey{ns: p.Namespace, peer: firstPeer(peers), n: len(peers), named: firstNamed, fam: fs}, func() string {
		return "named-" + defHash(p.Namespace, peers, named) + fs
	})
	if _, done := b.rs.Sets[name]; done {
		return name
	}
	s := nftrules.Set{Type: "ipv4_addr . inet_proto . inet_service"}
	if !v4 {
		s.Type = "ipv6_addr . inet_proto . inet_service"
	}
	for _, pod := range b.c.podsByIP() {
		if pod.ip.Is4() != v4 || !b.c.peersMatch(p.Namespace, peers, end{addr: pod.ip, pod: pod.pod}) {
			continue
		}
		for i := range named {
			if pr, ok := resolvePort(&named[i], pod.pod); ok {
				s.Elements = append(s.Elements, fmt.Sprintf("%s . %s . %d", pod.ip, pr.proto, pr.lo))
			}
		}
	}
	b.rs.Sets[name] = s
	return name
}

// podAddr is one address of a pod.
type podAddr struct {
	ip  netip.Addr
	pod *Pod
}

// podsByIP lists every pod address once, sorted, with the pod the
// evaluator finds by it.
func (c *cluster) podsByIP() []podAddr {
	if c.sorted == nil {
		c.sorted = make([]podAddr, 0, len(c.byIP))
		for ip, pod := range c.byIP {
			c.sorted = append(c.sorted, podAddr{ip, pod})
		}
		slices.SortFunc(c.sorted, func(a, b podAddr) int { return a.ip.Compare(b.ip) })
	}
	return c.sorted
}

func sortedUnique(ss []string) []string {
	slices.Sort(ss)
	return slices.Compact(ss)
}

// defHash names what a set is computed from: the policy's namespace (where
// a bare podSelector looks) and the peers (and named ports), as JSON.
func defHash(ns string, parts ...any) string {
	h := sha256.New()
	h.Write([]byte(ns))
	for _, p := range parts {
		b, _ := json.Marshal(p) // plain API structs: never fails
		h.Write(b)
	}
	return strings.ToLower(base32.StdEncoding.EncodeToString(h.Sum(nil)[:10]))
}
