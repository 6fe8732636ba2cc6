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
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/berthnet/berth/api/v1alpha1"
	"github.com/berthnet/berth/ipam"
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
	type pool struct {
		name   string
		ranges []ipam.Range
		groups []*l2announce.Group
	}
	var pools []*pool
	for i := range o.Pools {
		p := &o.Pools[i]
		ip, _, err := ipamkube.Pool(p)
		if err != nil {
			d.Problems = append(d.Problems, fmt.Sprintf("pool %s: %v", p.Name, err))
			continue
		}
		pools = append(pools, &pool{name: p.Name, ranges: ip.Ranges})
	}
	sort.Slice(pools, func(i, j int) bool { return pools[i].name < pools[j].name })
	anns := slices.Clone(o.Announcements)
	sort.Slice(anns, func(i, j int) bool { return anns[i].Name < anns[j].Name })
	for i := range anns {
		a := &anns[i]
		poolSel, err := selectors(a.Spec.IPPoolSelectors)
		if err != nil {
			d.Problems = append(d.Problems, fmt.Sprintf("L2Announcement %s: ipPoolSelectors: %v", a.Name, err))
			continue
		}
		nodeSel, err := selectors(a.Spec.NodeSelectors)
		if err != nil {
			d.Problems = append(d.Problems, fmt.Sprintf("L2Announcement %s: nodeSelectors: %v", a.Name, err))
			continue
		}
		all := len(a.Spec.IPPools) == 0 && len(poolSel) == 0
		for _, p := range pools {
			if !all && !slices.Contains(a.Spec.IPPools, p.name) && !matchesAny(poolSel, poolLabels(o.Pools, p.name)) {
				continue
			}
			g := &l2announce.Group{Key: l2announce.GroupKey(a.Name, p.name), Announcement: a.Name, Pool: p.name,
				NodeSelectors: nodeSel, Interfaces: a.Spec.Interfaces}
			for _, r := range p.ranges {
				g.Samples = append(g.Samples, r.First)
			}
			p.groups = append(p.groups, g)
			d.Groups = append(d.Groups, g)
		}
	}

	readyOn := localEndpoints(o.Slices)
	byAddr := map[netip.Addr]*l2announce.Address{}
	for i := range o.Services {
		svc := &o.Services[i]
		if !ipamkube.Served(svc, o.ServeUnclassed) {
			continue
		}
		addrs, _ := ipamkube.StatusAddrs(svc)
		key := svc.Namespace + "/" + svc.Name
		local := svc.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal
		for _, addr := range addrs {
			var in *pool
			for _, p := range pools {
				for _, r := range p.ranges {
					if r.Contains(addr) {
						in = p
					}
				}
			}
			if in == nil || len(in.groups) == 0 {
				continue // not Berth's, or not announced at layer 2
			}
			a := byAddr[addr]
			if a == nil {
				a = &l2announce.Address{Addr: addr, Groups: in.groups}
				if local {
					a.Local = readyOn[key]
					if a.Local == nil {
						a.Local = map[string]bool{}
					}
				}
				byAddr[addr] = a
				d.Addresses = append(d.Addresses, a)
			} else if a.Local != nil {
				if !local {
					a.Local = nil // one Service with policy Cluster: any node serves it
				} else {
					a.Local = intersect(a.Local, readyOn[key])
				}
			}
			part := reported(svc, addr)
			if len(a.Services) == 0 {
				a.Reported = part
			} else if a.Reported != part {
				a.Reported = ""
			}
			a.Services = append(a.Services, key)
			if strings.Contains(part, " announced by ") {
				a.Announced = true
			}
		}
	}
	for _, a := range d.Addresses {
		sort.Strings(a.Services)
	}
	sort.Slice(d.Addresses, func(i, j int) bool { return d.Addresses[i].Addr.Less(d.Addresses[j].Addr) })

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

func selectors(ls []metav1.LabelSelector) ([]labels.Selector, error) {
	var out []labels.Selector
	for i := range ls {
		s, err := metav1.LabelSelectorAsSelector(&ls[i])
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

func matchesAny(sel []labels.Selector, l map[string]string) bool {
	for _, s := range sel {
		if s.Matches(labels.Set(l)) {
			return true
		}
	}
	return false
}

func poolLabels(pools []v1alpha1.IPPool, name string) map[string]string {
	for i := range pools {
		if pools[i].Name == name {
			return pools[i].Labels
		}
	}
	return nil
}

// localEndpoints maps each Service (namespace/name) to the nodes holding a
// ready endpoint of it.
func localEndpoints(slices []discoveryv1.EndpointSlice) map[string]map[string]bool {
	out := map[string]map[string]bool{}
	for i := range slices {
		s := &slices[i]
		svc := s.Labels[discoveryv1.LabelServiceName]
		if svc == "" {
			continue
		}
		key := s.Namespace + "/" + svc
		for _, ep := range s.Endpoints {
			if ep.NodeName == nil || (ep.Conditions.Ready != nil && !*ep.Conditions.Ready) {
				continue
			}
			if out[key] == nil {
				out[key] = map[string]bool{}
			}
			out[key][*ep.NodeName] = true
		}
	}
	return out
}

func intersect(a, b map[string]bool) map[string]bool {
	out := map[string]bool{}
	for n := range a {
		if b[n] {
			out[n] = true
		}
	}
	return out
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
