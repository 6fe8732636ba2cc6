// Package kube adapts Services and EndpointSlices to the proxy's State.
package kube

import (
	"net/netip"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/berthnet/berth/proxy"
)

// State builds the proxy's input from the cluster's Services and
// EndpointSlices, as seen from node; externalIPs are served only within
// externalCIDRs (see ServicePorts).
func State(node string, svcs []corev1.Service, slices []discoveryv1.EndpointSlice, clusterCIDRs, externalCIDRs []netip.Prefix) proxy.State {
	st := proxy.State{Endpoints: map[proxy.PortKey][]proxy.Endpoint{}, ClusterCIDRs: clusterCIDRs}
	bySvc := SlicesByService(slices)
	for i := range svcs {
		ports, eps := ServicePorts(node, &svcs[i], bySvc[types.NamespacedName{Namespace: svcs[i].Namespace, Name: svcs[i].Name}], externalCIDRs)
		st.Services = append(st.Services, ports...)
		for k, v := range eps {
			st.Endpoints[k] = v
		}
	}
	return st
}

// SlicesByService groups EndpointSlices by the Service they belong to.
func SlicesByService(slices []discoveryv1.EndpointSlice) map[types.NamespacedName][]*discoveryv1.EndpointSlice {
	bySvc := make(map[types.NamespacedName][]*discoveryv1.EndpointSlice, len(slices))
	for i := range slices {
		s := &slices[i]
		name := s.Labels[discoveryv1.LabelServiceName]
		if name == "" {
			continue
		}
		k := types.NamespacedName{Namespace: s.Namespace, Name: name}
		bySvc[k] = append(bySvc[k], s)
	}
	return bySvc
}

// ServicePorts is one Service's part of the state: its ports and their
// endpoints. Headless and ExternalName Services have none. Of the
// Service's spec.externalIPs only those within externalCIDRs are served:
// any tenant who can create a Service can write any address there, and a
// proxy that serves it takes that address's traffic from every pod and
// node (CVE-2020-8554), so none are served unless the operator allows a
// range (berth-agent --external-ip-cidrs).
func ServicePorts(node string, svc *corev1.Service, slices []*discoveryv1.EndpointSlice, externalCIDRs []netip.Prefix) ([]proxy.ServicePort, map[proxy.PortKey][]proxy.Endpoint) {
	if svc.Spec.Type == corev1.ServiceTypeExternalName || svc.Spec.ClusterIP == corev1.ClusterIPNone || svc.Spec.ClusterIP == "" {
		return nil, nil
	}
	var ports []proxy.ServicePort
	eps := map[proxy.PortKey][]proxy.Endpoint{}
	for _, p := range svc.Spec.Ports {
		key := proxy.PortKey{Namespace: svc.Namespace, Name: svc.Name, Port: portName(p), Protocol: strings.ToLower(string(p.Protocol))}
		if key.Protocol == "" {
			key.Protocol = "tcp"
		}
		sp := proxy.ServicePort{
			Key:           key,
			ClusterIPs:    addrs(svc.Spec.ClusterIPs),
			Port:          uint16(p.Port),
			ExternalIPs:   allowedExternalIPs(svc, externalCIDRs),
			ExternalLocal: svc.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal,
			InternalLocal: svc.Spec.InternalTrafficPolicy != nil && *svc.Spec.InternalTrafficPolicy == corev1.ServiceInternalTrafficPolicyLocal,
		}
		if svc.Spec.SessionAffinity == corev1.ServiceAffinityClientIP {
			sp.AffinitySeconds = int(corev1.DefaultClientIPServiceAffinitySeconds)
			if c := svc.Spec.SessionAffinityConfig; c != nil && c.ClientIP != nil && c.ClientIP.TimeoutSeconds != nil {
				sp.AffinitySeconds = int(*c.ClientIP.TimeoutSeconds)
			}
		}
		if svc.Spec.Type == corev1.ServiceTypeNodePort || svc.Spec.Type == corev1.ServiceTypeLoadBalancer {
			sp.NodePort = uint16(p.NodePort)
		}
		if sp.ExternalLocal && svc.Spec.Type == corev1.ServiceTypeLoadBalancer {
			sp.HealthCheckNodePort = uint16(svc.Spec.HealthCheckNodePort)
		}
		if svc.Spec.Type == corev1.ServiceTypeLoadBalancer {
			for _, ing := range svc.Status.LoadBalancer.Ingress {
				if a, err := netip.ParseAddr(ing.IP); err == nil {
					sp.LoadBalancerIPs = append(sp.LoadBalancerIPs, a.Unmap())
				}
			}
		}
		ports = append(ports, sp)
		eps[key] = endpoints(node, p, slices)
	}
	return ports, eps
}

func portName(p corev1.ServicePort) string {
	if p.Name != "" {
		return p.Name
	}
	return strconv.Itoa(int(p.Port))
}

func addrs(ss []string) []netip.Addr {
	var out []netip.Addr
	for _, s := range ss {
		if a, err := netip.ParseAddr(s); err == nil {
			out = append(out, a.Unmap())
		}
	}
	return out
}

// endpoints lists the slices' endpoints for one Service port, matched by
// port name as the EndpointSlice controller fills them.
func endpoints(node string, sp corev1.ServicePort, slices []*discoveryv1.EndpointSlice) []proxy.Endpoint {
	var out []proxy.Endpoint
	seen := map[string]bool{}
	for _, s := range slices {
		var port uint16
		found := false
		for _, p := range s.Ports {
			if p.Name != nil && *p.Name == sp.Name && p.Port != nil && (p.Protocol == nil || *p.Protocol == sp.Protocol) {
				port, found = uint16(*p.Port), true
			}
		}
		if !found {
			continue
		}
		for _, e := range s.Endpoints {
			ready := e.Conditions.Ready == nil || *e.Conditions.Ready
			serving := e.Conditions.Serving == nil || *e.Conditions.Serving
			terminating := e.Conditions.Terminating != nil && *e.Conditions.Terminating
			local := e.NodeName != nil && *e.NodeName == node
			for _, a := range e.Addresses {
				ip, err := netip.ParseAddr(a)
				if err != nil || seen[a] {
					continue
				}
				seen[a] = true
				out = append(out, proxy.Endpoint{Addr: ip.Unmap(), Port: port, Ready: ready, Serving: serving, Terminating: terminating, Local: local})
			}
		}
	}
	return out
}

// allowedExternalIPs are the Service's externalIPs within cidrs.
func allowedExternalIPs(svc *corev1.Service, cidrs []netip.Prefix) []netip.Addr {
	var out []netip.Addr
	for _, a := range addrs(svc.Spec.ExternalIPs) {
		if inAny(a, cidrs) {
			out = append(out, a)
		}
	}
	return out
}

// RefusedExternalIPs counts the Service's externalIPs outside cidrs, which
// ServicePorts leaves out (malformed ones too).
func RefusedExternalIPs(svc *corev1.Service, cidrs []netip.Prefix) int {
	return len(svc.Spec.ExternalIPs) - len(allowedExternalIPs(svc, cidrs))
}

func inAny(a netip.Addr, cidrs []netip.Prefix) bool {
	for _, c := range cidrs {
		if c.Contains(a) {
			return true
		}
	}
	return false
}
