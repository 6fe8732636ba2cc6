// Package kube turns the API server's objects into the announcer's input
// (addresses, nodes, groups) and writes what the announcer reports onto
// the Services.
package kube

import (
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/meta"

	"github.com/berthnet/berth/api/v1alpha1"
	ipamkube "github.com/berthnet/berth/ipam/kube"
	"github.com/berthnet/berth/l2announce"
)

// Objects is what the announcer's input is built from.
type Objects struct {
	Services      []corev1.Service
	Slices        []discoveryv1.EndpointSlice
	Pools         []v1alpha1.IPPool
	Announcements []v1alpha1.L2Announcement
	Nodes         []corev1.Node
	// ServeUnclassed: Berth serves LoadBalancer Services without a class.
	ServeUnclassed bool
}

// Desired is the announcer's input.
type Desired struct {
	Addresses []*l2announce.Address
	Nodes     []l2announce.NodeInfo
	Groups    []*l2announce.Group
	// Problems are announcements or pools left out, and why (their
	// status says so too; the controller writes it).
	Problems []string
}

// Build compiles the objects into the announcer's input. Only addresses
// Berth assigned are announced: in the status of a LoadBalancer Service
// Berth serves, and inside an IPPool an L2Announcement covers.
func Build(o Objects) Desired {
	var d Desired
	assigned, problems := ipamkube.AssignedAddresses(o.Services, o.Pools, o.Slices, o.ServeUnclassed)
	d.Problems = problems
	samples := map[string][]netip.Addr{}
	for i := range o.Pools {
		if p, _, err := ipamkube.Pool(&o.Pools[i]); err == nil {
			for _, r := range p.Ranges {
				samples[p.Name] = append(samples[p.Name], r.First)
			}
		}
	}
	groups := map[string][]*l2announce.Group{} // by pool
	anns := slices.Clone(o.Announcements)
	sort.Slice(anns, func(i, j int) bool { return anns[i].Name < anns[j].Name })
	for i := range anns {
		a := &anns[i]
		pools, err := ipamkube.MatchPools(a.Spec.IPPools, a.Spec.IPPoolSelectors, o.Pools)
		if err != nil {
			d.Problems = append(d.Problems, fmt.Sprintf("L2Announcement %s: %v", a.Name, err))
			continue
		}
		nodeSel, err := ipamkube.Selectors(a.Spec.NodeSelectors)
		if err != nil {
			d.Problems = append(d.Problems, fmt.Sprintf("L2Announcement %s: nodeSelectors: %v", a.Name, err))
			continue
		}
		for _, p := range pools {
			if samples[p] == nil {
				continue // an invalid pool: nothing of it is assigned
			}
			g := &l2announce.Group{Key: l2announce.GroupKey(a.Name, p), Announcement: a.Name, Pool: p,
				NodeSelectors: nodeSel, Interfaces: a.Spec.Interfaces, Samples: samples[p]}
			groups[p] = append(groups[p], g)
			d.Groups = append(d.Groups, g)
		}
	}
	for _, la := range assigned {
		if len(groups[la.Pool]) == 0 {
			continue // not announced at layer 2
		}
		a := &l2announce.Address{Addr: la.Addr, Groups: groups[la.Pool], Local: la.Local, Services: la.Keys()}
		for i, svc := range la.Services {
			part := reported(svc, la.Addr)
			if i == 0 {
				a.Reported = part
			} else if a.Reported != part {
				a.Reported = ""
			}
			if strings.Contains(part, " announced by ") {
				a.Announced = true
			}
		}
		d.Addresses = append(d.Addresses, a)
	}

	for i := range o.Nodes {
		n := &o.Nodes[i]
		info := l2announce.NodeInfo{Name: n.Name, Labels: n.Labels}
		for _, c := range n.Status.Conditions {
			if c.Type == corev1.NodeNetworkUnavailable && c.Status == corev1.ConditionTrue {
				info.NetworkUnavailable = true
			}
		}
		d.Nodes = append(d.Nodes, info)
	}
	return d
}

// ConditionAnnounced is the Service condition the announcing node writes:
// True when every address Berth announces at layer 2 has a node
// answering for it, with the node and interface in the message.
const ConditionAnnounced = "berth.dev/L2Announced"

// reported is what the Service's condition says of addr. When it says a
// node announced addr, addr was announced before, and a new owner takes it
// over without a conflict probe.
func reported(svc *corev1.Service, addr netip.Addr) string {
	c := meta.FindStatusCondition(svc.Status.Conditions, ConditionAnnounced)
	if c == nil {
		return ""
	}
	return parseParts(c.Message)[addr]
}

// parseParts splits a condition message written by describe into its
// per-address parts.
func parseParts(msg string) map[netip.Addr]string {
	out := map[netip.Addr]string{}
	for _, part := range strings.Split(msg, "; ") {
		f, _, _ := strings.Cut(part, " ")
		if a, err := netip.ParseAddr(strings.TrimSuffix(f, ":")); err == nil {
			out[a] = part
		}
	}
	return out
}
