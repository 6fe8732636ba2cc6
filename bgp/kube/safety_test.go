package kube

import (
	"fmt"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/berthnet/berth/api/v1alpha1"
)

func podNode(name, internalIP string, podCIDRs ...string) corev1.Node {
	n := corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.NodeSpec{PodCIDRs: podCIDRs}}
	n.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: internalIP},
		{Type: corev1.NodeHostName, Address: name}}
	return n
}

// A BGPPeer's address inside the cluster's own ranges (a node's pod
// range, a ServiceCIDR, an IPPool's addresses, CIDR or first-last) is
// refused, with the reason AddressInClusterRange and the range named; an
// address beside them is peered with. Cases written by hand.
func TestBuildPeerAddressRanges(t *testing.T) {
	self := podNode("node1", "192.0.2.11", "10.244.1.0/24", "fd00:10:244:1::/64")
	nodes := []corev1.Node{self, podNode("node2", "192.0.2.12", "10.244.2.0/24")}
	cidrs := []networkingv1.ServiceCIDR{{ObjectMeta: metav1.ObjectMeta{Name: "kubernetes"},
		Spec: networkingv1.ServiceCIDRSpec{CIDRs: []string{"10.96.0.0/16", "fd00:10:96::/112"}}}}
	pools := []v1alpha1.IPPool{testPool("public", "198.51.100.0/24", "2001:db8:1::/120"), testPool("small", "192.0.2.100-192.0.2.110")}
	for _, c := range []struct {
		addr string
		want string // "" peered; else a part of the problem
	}{
		{"192.0.2.1", ""},
		{"10.244.2.1", "address 10.244.2.1 is inside node node2's pod range 10.244.2.0/24"},
		{"10.244.1.254", "inside node node1's pod range 10.244.1.0/24"},
		{"fd00:10:244:1::1", "inside node node1's pod range fd00:10:244:1::/64"},
		{"10.244.3.1", ""}, // no node has it
		{"10.96.0.1", "inside the Service range 10.96.0.0/16 (ServiceCIDR kubernetes)"},
		{"fd00:10:96::a", "inside the Service range fd00:10:96::/112 (ServiceCIDR kubernetes)"},
		{"10.97.0.1", ""},
		{"198.51.100.255", "inside IPPool public's addresses 198.51.100.0/24"},
		{"2001:db8:1::ff", "inside IPPool public's addresses 2001:db8:1::/120"},
		{"2001:db8:1::100", ""},
		{"192.0.2.100", "inside IPPool small's addresses 192.0.2.100-192.0.2.110"},
		{"192.0.2.110", "inside IPPool small's addresses 192.0.2.100-192.0.2.110"},
		{"192.0.2.111", ""},
	} {
		t.Run(c.addr, func(t *testing.T) {
			b := Build(Objects{Self: &self, Nodes: nodes, ServiceCIDRs: cidrs, Pools: pools,
				Peers: []v1alpha1.BGPPeer{testPeer("router", c.addr)}})
			got := b.PeerProblems()["router"]
			ran := len(b.Plan.Peers) == 1
			switch {
			case c.want == "" && (got != Problem{} || !ran):
				t.Errorf("refused (%+v), want peered", got)
			case c.want != "" && (ran || got.Reason != v1alpha1.ReasonAddressInClusterRange || !strings.Contains(got.Message, c.want)):
				t.Errorf("peered %v, problem %+v; want refused with reason %s, saying %q", ran, got, v1alpha1.ReasonAddressInClusterRange, c.want)
			}
		})
	}
}

// maxPrefixes: unset takes the default (10000), 0 is no limit, a number
// is the limit; other problems keep the reason InvalidPeer.
func TestBuildMaxPrefixes(t *testing.T) {
	self := podNode("node1", "192.0.2.11")
	for _, c := range []struct {
		set  *int64
		want uint32
	}{{nil, 10000}, {ptr(int64(0)), 0}, {ptr(int64(50)), 50}, {ptr(int64(4294967295)), 4294967295}} {
		b := Build(Objects{Self: &self, Peers: []v1alpha1.BGPPeer{testPeer("router", "192.0.2.1", func(s *v1alpha1.BGPPeerSpec) { s.MaxPrefixes = c.set })}})
		if len(b.Plan.Peers) != 1 || b.Plan.Peers[0].MaxPrefixes != c.want {
			t.Errorf("maxPrefixes %v: plan %+v, want the limit %d", c.set, b.Plan.Peers, c.want)
		}
	}
	b := Build(Objects{Self: &self, Peers: []v1alpha1.BGPPeer{testPeer("router", "192.0.2.1", func(s *v1alpha1.BGPPeerSpec) {
		s.PasswordSecret = &v1alpha1.SecretKeyRef{Name: "md5", Key: "password"}
	})}})
	if p := b.PeerProblems()["router"]; p.Reason != v1alpha1.ReasonInvalidPeer {
		t.Errorf("a missing password Secret: %+v, want reason %s", p, v1alpha1.ReasonInvalidPeer)
	}
}

// In pod network mode bgp the plan holds every node's pod ranges with
// that node's InternalIPs (its own too), and none otherwise.
func TestBuildPodRanges(t *testing.T) {
	self := podNode("node1", "192.0.2.11", "10.244.1.0/24")
	nodes := []corev1.Node{self, podNode("node2", "192.0.2.12", "10.244.2.0/24", "fd00:10:244:2::/64"), podNode("node3", "192.0.2.13")}
	view := func(o Objects) string {
		var out []string
		for _, r := range Build(o).Plan.PodRanges {
			out = append(out, fmt.Sprintf("%s %s %v", r.Prefix, r.Node, r.Addrs))
		}
		return strings.Join(out, "; ")
	}
	want := "10.244.1.0/24 node1 [192.0.2.11]; 10.244.2.0/24 node2 [192.0.2.12]; fd00:10:244:2::/64 node2 [192.0.2.12]"
	if got := view(Objects{Self: &self, Nodes: nodes, PodCIDRs: true}); got != want {
		t.Errorf("mode bgp: %q, want %q", got, want)
	}
	if got := view(Objects{Self: &self, Nodes: nodes}); got != "" {
		t.Errorf("another mode: %q, want none", got)
	}
}
