package netpol

import (
	"fmt"
	"net/netip"
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// The fixture is upstream's e2e model: namespaces x, y, z labelled ns=<name>,
// pods a, b, c in each labelled pod=<name>. Pod <ns>/<p> has 10.0.<n>.<p>
// and fd00::<n>:<p> (n, p counted from 1) and runs on node n<p>. Its named
// port "serve" is TCP 80 on a, 81 on b and UDP 82 on c.
var fixtureNS = []string{"x", "y", "z"}
var fixturePods = []string{"a", "b", "c"}

func namespaces() []Namespace {
	var out []Namespace
	for _, n := range fixtureNS {
		out = append(out, Namespace{Name: n, Labels: map[string]string{"ns": n}})
	}
	return out
}

func pods() []Pod {
	var out []Pod
	for i, n := range fixtureNS {
		for j, p := range fixturePods {
			serve := ContainerPort{Protocol: corev1.ProtocolTCP, Port: int32(80 + j)}
			if p == "c" {
				serve.Protocol = corev1.ProtocolUDP
			}
			out = append(out, Pod{
				Namespace:  n,
				Name:       p,
				Labels:     map[string]string{"pod": p},
				IPs:        []netip.Addr{netip.AddrFrom4([4]byte{10, 0, byte(i + 1), byte(j + 1)}), netip.MustParseAddr(fmt.Sprintf("fd00::%d:%d", i+1, j+1))},
				Node:       fmt.Sprintf("n%d", j+1),
				NamedPorts: map[string]ContainerPort{"serve": serve},
			})
		}
	}
	return out
}

// addr resolves "x/a" (IPv4), "x/a6" (IPv6) or a literal address.
func addr(s string) netip.Addr {
	ns, p, ok := strings.Cut(s, "/")
	if !ok {
		return netip.MustParseAddr(s)
	}
	v6 := strings.HasSuffix(p, "6")
	p = strings.TrimSuffix(p, "6")
	for _, pod := range pods() {
		if pod.Namespace == ns && pod.Name == p {
			if v6 {
				return pod.IPs[1]
			}
			return pod.IPs[0]
		}
	}
	panic("no pod " + s)
}

func tcp(from, to string, port int32) Conn {
	return Conn{Src: addr(from), Dst: addr(to), Protocol: corev1.ProtocolTCP, Port: port}
}

func udp(from, to string, port int32) Conn {
	return Conn{Src: addr(from), Dst: addr(to), Protocol: corev1.ProtocolUDP, Port: port}
}

// sel builds a selector from "k=v" pairs; sel() is the empty selector.
func sel(kv ...string) *metav1.LabelSelector {
	s := &metav1.LabelSelector{MatchLabels: map[string]string{}}
	for _, p := range kv {
		k, v, _ := strings.Cut(p, "=")
		s.MatchLabels[k] = v
	}
	return s
}

func policy(ns, name string, podSel *metav1.LabelSelector, types ...networkingv1.PolicyType) networkingv1.NetworkPolicy {
	return networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       networkingv1.NetworkPolicySpec{PodSelector: *podSel, PolicyTypes: types},
	}
}

func withIngress(p networkingv1.NetworkPolicy, rules ...networkingv1.NetworkPolicyIngressRule) networkingv1.NetworkPolicy {
	p.Spec.Ingress = append(p.Spec.Ingress, rules...)
	return p
}

func withEgress(p networkingv1.NetworkPolicy, rules ...networkingv1.NetworkPolicyEgressRule) networkingv1.NetworkPolicy {
	p.Spec.Egress = append(p.Spec.Egress, rules...)
	return p
}

func from(peers ...networkingv1.NetworkPolicyPeer) networkingv1.NetworkPolicyIngressRule {
	return networkingv1.NetworkPolicyIngressRule{From: peers}
}

func to(peers ...networkingv1.NetworkPolicyPeer) networkingv1.NetworkPolicyEgressRule {
	return networkingv1.NetworkPolicyEgressRule{To: peers}
}

func ports(r networkingv1.NetworkPolicyIngressRule, ps ...networkingv1.NetworkPolicyPort) networkingv1.NetworkPolicyIngressRule {
	r.Ports = ps
	return r
}

func egressPorts(r networkingv1.NetworkPolicyEgressRule, ps ...networkingv1.NetworkPolicyPort) networkingv1.NetworkPolicyEgressRule {
	r.Ports = ps
	return r
}

func podPeer(s *metav1.LabelSelector) networkingv1.NetworkPolicyPeer {
	return networkingv1.NetworkPolicyPeer{PodSelector: s}
}

func nsPeer(s *metav1.LabelSelector) networkingv1.NetworkPolicyPeer {
	return networkingv1.NetworkPolicyPeer{NamespaceSelector: s}
}

func bothPeer(ns, pod *metav1.LabelSelector) networkingv1.NetworkPolicyPeer {
	return networkingv1.NetworkPolicyPeer{NamespaceSelector: ns, PodSelector: pod}
}

func blockPeer(cidr string, except ...string) networkingv1.NetworkPolicyPeer {
	return networkingv1.NetworkPolicyPeer{IPBlock: &networkingv1.IPBlock{CIDR: cidr, Except: except}}
}

// port builds a policy port: proto "" leaves the protocol unset (TCP).
func port(proto corev1.Protocol, p int32) networkingv1.NetworkPolicyPort {
	np := networkingv1.NetworkPolicyPort{Port: new(intstr.FromInt32(p))}
	if proto != "" {
		np.Protocol = &proto
	}
	return np
}

func portRange(p, end int32) networkingv1.NetworkPolicyPort {
	np := port(corev1.ProtocolTCP, p)
	np.EndPort = &end
	return np
}

func namedPort(proto corev1.Protocol, name string) networkingv1.NetworkPolicyPort {
	np := networkingv1.NetworkPolicyPort{Port: new(intstr.FromString(name))}
	if proto != "" {
		np.Protocol = &proto
	}
	return np
}

func allPortsOf(proto corev1.Protocol) networkingv1.NetworkPolicyPort {
	return networkingv1.NetworkPolicyPort{Protocol: &proto}
}

const (
	ingress = networkingv1.PolicyTypeIngress
	egress  = networkingv1.PolicyTypeEgress
)
