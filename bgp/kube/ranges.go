package kube

import (
	"fmt"
	"net/netip"

	corev1 "k8s.io/api/core/v1"

	"github.com/berthnet/berth/bgp"
	"github.com/berthnet/berth/ipam"
)

// clusterRange is an address range no router can be in: a pod range, a
// Service range or an IPPool's.
type clusterRange struct {
	r    ipam.Range
	what string // for a person: "node node2's pod range 10.244.2.0/24"
}

// clusterRanges lists the Nodes' pod ranges, the ServiceCIDRs' ranges
// and the IPPools' addresses.
func clusterRanges(o Objects) []clusterRange {
	var out []clusterRange
	add := func(s, what string) {
		if r, err := ipam.ParseRange(s); err == nil {
			out = append(out, clusterRange{r: r, what: what})
		}
	}
	for i := range o.Nodes {
		for _, c := range o.Nodes[i].Spec.PodCIDRs {
			if p, err := netip.ParsePrefix(c); err == nil {
				add(p.Masked().String(), fmt.Sprintf("node %s's pod range %s", o.Nodes[i].Name, p.Masked()))
			}
		}
	}
	for i := range o.ServiceCIDRs {
		for _, c := range o.ServiceCIDRs[i].Spec.CIDRs {
			if p, err := netip.ParsePrefix(c); err == nil {
				add(p.Masked().String(), fmt.Sprintf("the Service range %s (ServiceCIDR %s)", p.Masked(), o.ServiceCIDRs[i].Name))
			}
		}
	}
	for i := range o.Pools {
		for _, a := range o.Pools[i].Spec.Addresses {
			add(string(a), fmt.Sprintf("IPPool %s's addresses %s", o.Pools[i].Name, a))
		}
	}
	return out
}

// checkAddress refuses a peer address inside a cluster range: no router
// is there, so a session would go to whatever holds the address (a pod,
// a Service's backends, a LoadBalancer address) and the node would take
// its routes.
func checkAddress(addr netip.Addr, ranges []clusterRange) error {
	for _, r := range ranges {
		if r.r.Contains(addr) {
			return fmt.Errorf("address %s is inside %s, where no router is: the node does not peer with it; set the router's own address", addr, r.what)
		}
	}
	return nil
}

// podRanges are the Nodes' pod ranges, each with its node's InternalIPs:
// the only next hops a learned route to it may have.
func podRanges(nodes []corev1.Node) []bgp.PodRange {
	var out []bgp.PodRange
	for i := range nodes {
		var addrs []netip.Addr
		for _, a := range nodes[i].Status.Addresses {
			if a.Type == corev1.NodeInternalIP {
				if ip, err := netip.ParseAddr(a.Address); err == nil {
					addrs = append(addrs, ip.Unmap())
				}
			}
		}
		for _, c := range nodes[i].Spec.PodCIDRs {
			if p, err := netip.ParsePrefix(c); err == nil {
				out = append(out, bgp.PodRange{Prefix: p.Masked(), Node: nodes[i].Name, Addrs: addrs})
			}
		}
	}
	return out
}

// DefaultMaxPrefixes is the limit of a BGPPeer that sets no maxPrefixes:
// more than a cluster of 5,000 nodes learns (one pod range a node and
// family), far less than an Internet table.
const DefaultMaxPrefixes = 10000

// Problem is why a node leaves a BGPPeer out: a v1alpha1 reason and a
// message for people.
type Problem struct {
	Reason, Message string
	// UID is the BGPPeer's: its status is written to that object only.
	UID string
}
