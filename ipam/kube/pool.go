package kube

import (
	"fmt"
	"net/netip"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/berthnet/berth/api/v1alpha1"
	"github.com/berthnet/berth/ipam"
)

// Pool turns an IPPool into an allocator pool. Its error says what is wrong
// with the spec, for the pool's Ready condition; the reason is one of the
// v1alpha1 reasons.
func Pool(p *v1alpha1.IPPool) (ipam.Pool, string, error) {
	out := ipam.Pool{
		Name:          p.Name,
		AutoAssign:    p.Spec.AutoAssign == nil || *p.Spec.AutoAssign,
		AvoidBuggyIPs: p.Spec.AvoidBuggyIPs,
	}
	for _, a := range p.Spec.Addresses {
		r, err := ipam.ParseRange(string(a))
		if err != nil {
			return out, v1alpha1.ReasonInvalidAddresses, err
		}
		if err := ipam.CheckUsable(r); err != nil {
			return out, v1alpha1.ReasonInvalidAddresses, err
		}
		out.Ranges = append(out.Ranges, r)
	}
	if len(out.Ranges) == 0 {
		return out, v1alpha1.ReasonInvalidAddresses, fmt.Errorf("the pool has no addresses")
	}
	if sa := p.Spec.ServiceAllocation; sa != nil {
		if sa.Priority != nil {
			out.Priority, out.HasPriority = *sa.Priority, true
		}
		out.Namespaces = sa.Namespaces
		var err error
		if sa.NamespaceSelector != nil {
			if out.NamespaceSelector, err = metav1.LabelSelectorAsSelector(sa.NamespaceSelector); err != nil {
				return out, v1alpha1.ReasonInvalidSelector, fmt.Errorf("serviceAllocation.namespaceSelector: %w", err)
			}
		}
		if sa.ServiceSelector != nil {
			if out.ServiceSelector, err = metav1.LabelSelectorAsSelector(sa.ServiceSelector); err != nil {
				return out, v1alpha1.ReasonInvalidSelector, fmt.Errorf("serviceAllocation.serviceSelector: %w", err)
			}
		}
	}
	return out, "", nil
}

// Reservations lists what no pool may hand out: the service CIDRs, the
// cluster (pod) CIDRs, each node's podCIDRs and each node's addresses.
func Reservations(serviceCIDRs, clusterCIDRs []string, nodes []corev1.Node) []ipam.Reservation {
	var out []ipam.Reservation
	add := func(cidr, why string) {
		p, err := netip.ParsePrefix(cidr)
		if err != nil {
			return
		}
		r, err := ipam.ParseRange(p.Masked().String())
		if err != nil {
			return
		}
		out = append(out, ipam.Reservation{Range: r, Why: why})
	}
	for _, c := range serviceCIDRs {
		add(c, "service CIDR "+c)
	}
	for _, c := range clusterCIDRs {
		add(c, "cluster CIDR "+c)
	}
	for _, n := range nodes {
		for _, c := range n.Spec.PodCIDRs {
			add(c, "node "+n.Name+" podCIDR "+c)
		}
		for _, a := range n.Status.Addresses {
			if a.Type != corev1.NodeInternalIP && a.Type != corev1.NodeExternalIP {
				continue
			}
			ip, err := netip.ParseAddr(a.Address)
			if err != nil {
				continue
			}
			add(netip.PrefixFrom(ip.Unmap(), ip.Unmap().BitLen()).String(), "node "+n.Name+" address "+a.Address)
		}
	}
	return out
}
