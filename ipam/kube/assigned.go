package kube

import (
	"fmt"
	"net/netip"
	"slices"
	"sort"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/berthnet/berth/api/v1alpha1"
	"github.com/berthnet/berth/ipam"
)

// LBAddress is one LoadBalancer address Berth assigned, as the announcers
// (layer 2 and BGP) see it.
type LBAddress struct {
	Addr netip.Addr
	// Pool is the IPPool it lies in.
	Pool string
	// Services use it (more than one when shared), sorted by
	// namespace/name.
	Services []*corev1.Service
	// Local is nil unless every Service on it has externalTrafficPolicy
	// Local; then it holds the nodes with a ready endpoint of every one.
	Local map[string]bool
}

// Keys lists the Services as namespace/name.
func (a *LBAddress) Keys() []string {
	out := make([]string, len(a.Services))
	for i, s := range a.Services {
		out[i] = Key(s.Namespace, s.Name)
	}
	return out
}

// AssignedAddresses lists the addresses in the status of the LoadBalancer
// Services Berth serves that lie inside a valid IPPool: what Berth
// assigned, and nothing else. problems names the pools left out.
func AssignedAddresses(svcs []corev1.Service, pools []v1alpha1.IPPool, endpointSlices []discoveryv1.EndpointSlice, serveUnclassed bool) (out []*LBAddress, problems []string) {
	type pool struct {
		name   string
		ranges []ipam.Range
	}
	var valid []pool
	for i := range pools {
		p, _, err := Pool(&pools[i])
		if err != nil {
			problems = append(problems, fmt.Sprintf("pool %s: %v", pools[i].Name, err))
			continue
		}
		valid = append(valid, pool{name: p.Name, ranges: p.Ranges})
	}
	sort.Slice(valid, func(i, j int) bool { return valid[i].name < valid[j].name })
	readyOn := LocalEndpoints(endpointSlices)
	byAddr := map[netip.Addr]*LBAddress{}
	for i := range svcs {
		svc := &svcs[i]
		if !Served(svc, serveUnclassed) {
			continue
		}
		addrs, _ := StatusAddrs(svc)
		key := Key(svc.Namespace, svc.Name)
		local := svc.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal
		for _, addr := range addrs {
			in := ""
			for _, p := range valid {
				for _, r := range p.ranges {
					if r.Contains(addr) && in == "" {
						in = p.name
					}
				}
			}
			if in == "" {
				continue // not Berth's
			}
			a := byAddr[addr]
			if a == nil {
				a = &LBAddress{Addr: addr, Pool: in}
				if local {
					a.Local = readyOn[key]
					if a.Local == nil {
						a.Local = map[string]bool{}
					}
				}
				byAddr[addr] = a
				out = append(out, a)
			} else if a.Local != nil {
				if !local {
					a.Local = nil // one Service with policy Cluster: any node serves it
				} else {
					a.Local = intersect(a.Local, readyOn[key])
				}
			}
			a.Services = append(a.Services, svc)
		}
	}
	for _, a := range out {
		sort.Slice(a.Services, func(i, j int) bool {
			return Key(a.Services[i].Namespace, a.Services[i].Name) < Key(a.Services[j].Namespace, a.Services[j].Name)
		})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Addr.Less(out[j].Addr) })
	return out, problems
}

// LocalEndpoints maps each Service (namespace/name) to the nodes holding
// a ready endpoint of it.
func LocalEndpoints(endpointSlices []discoveryv1.EndpointSlice) map[string]map[string]bool {
	out := map[string]map[string]bool{}
	for i := range endpointSlices {
		s := &endpointSlices[i]
		svc := s.Labels[discoveryv1.LabelServiceName]
		if svc == "" {
			continue
		}
		key := Key(s.Namespace, svc)
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

// MatchPools lists the IPPools an announcement covers: those named, those
// its selectors match, or, with neither, every pool. Sorted.
func MatchPools(names []string, selectors []metav1.LabelSelector, pools []v1alpha1.IPPool) ([]string, error) {
	sels, err := Selectors(selectors)
	if err != nil {
		return nil, fmt.Errorf("pool selectors: %w", err)
	}
	all := len(names) == 0 && len(sels) == 0
	var out []string
	for i := range pools {
		p := &pools[i]
		ok := all || slices.Contains(names, p.Name)
		for _, s := range sels {
			ok = ok || s.Matches(labels.Set(p.Labels))
		}
		if ok {
			out = append(out, p.Name)
		}
	}
	sort.Strings(out)
	return out, nil
}

// Selectors converts label selectors; the error says which one is wrong.
func Selectors(ls []metav1.LabelSelector) ([]labels.Selector, error) {
	var out []labels.Selector
	for i := range ls {
		s, err := metav1.LabelSelectorAsSelector(&ls[i])
		if err != nil {
			return nil, fmt.Errorf("selector %d: %w", i, err)
		}
		out = append(out, s)
	}
	return out, nil
}
