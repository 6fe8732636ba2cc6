// Package kube turns the API server's objects into the announcer's input
// (addresses, nodes, groups) and writes what the announcer reports onto
// the Services.
package kube

import (
	"fmt"
	"net/netip"
	"slices"
	"sort"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"

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
		if err := a.Spec.ValidateInterfaces(); err != nil {
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
			recs, err := Records(svc)
			if err != nil {
				// A takeover then probes first: slower, never wrong.
				d.Problems = append(d.Problems, err.Error())
			}
			var said *l2announce.Report
			if rec, ok := recs[la.Addr]; ok {
				said = rec.report(la.Addr)
				if rec.State == l2announce.Announcing {
					a.Announced = true
				}
			}
			if i == 0 {
				a.Reported = said
			} else if a.Reported != nil && !a.Reported.Says(said) {
				a.Reported = nil
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

// ConditionAnnounced is the Service condition the announcing node writes,
// for people: True when every address Berth announces at layer 2 has a
// node answering for it, with the node and interface in the message. The
// same facts, as data, are in AnnotationState.
const ConditionAnnounced = "berth.dev/L2Announced"
