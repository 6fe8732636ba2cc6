// Package kube adapts Kubernetes objects to the allocator's plain data:
// Services to requests, IPPools to pools, the cluster's CIDRs and node
// addresses to reservations.
package kube

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/berthnet/berth/ipam"
)

// Names Berth reads on Services.
const (
	// Class is the loadBalancerClass Berth serves.
	Class = "berth.dev/lb"
	// AnnotationPool asks for a specific pool.
	AnnotationPool = "berth.dev/ip-pool"
	// AnnotationIPs asks for specific addresses, comma-separated, one per family.
	AnnotationIPs = "berth.dev/load-balancer-ips"
	// AnnotationSharing lets Services of one namespace with the same value
	// share an address.
	AnnotationSharing = "berth.dev/allow-shared-ip"
	// AnnotationSharingNamespaces lists, comma-separated, the other
	// namespaces whose Services may share under the same key ("*": any);
	// both sides must list each other.
	AnnotationSharingNamespaces = "berth.dev/allow-shared-ip-namespaces"
	// LabelGatewayNamespace, on the Service of a Gateway's Envoy fleet,
	// names the Gateway's namespace; the controller sets it.
	LabelGatewayNamespace = "berth.dev/gateway-namespace"
)

// RequestNamespace is the namespace a Service's request counts in (IPPool
// namespace selectors, sharing keys): its own, except for the Service of
// a Gateway's Envoy fleet, which lives in Berth's namespace (fleetNamespace)
// and counts in its Gateway's. The label is trusted only there, where
// only the controller (and the cluster's administrators) write: the same
// label on a tenant's Service changes nothing.
func RequestNamespace(svc *corev1.Service, fleetNamespace string) string {
	if fleetNamespace == "" || svc.Namespace != fleetNamespace {
		return svc.Namespace
	}
	if ns := svc.Labels[LabelGatewayNamespace]; ns != "" {
		return ns
	}
	return svc.Namespace
}

// Served reports whether Berth gives the Service an address: type
// LoadBalancer with Berth's class, or with no class when serveUnclassed.
func Served(svc *corev1.Service, serveUnclassed bool) bool {
	if svc.Spec.Type != corev1.ServiceTypeLoadBalancer {
		return false
	}
	if svc.Spec.LoadBalancerClass == nil {
		return serveUnclassed
	}
	return *svc.Spec.LoadBalancerClass == Class
}

// OursByClass reports whether the Service's class is Berth's or unset with
// Berth serving unset classes: the Services whose status Berth may write.
func OursByClass(svc *corev1.Service, serveUnclassed bool) bool {
	if svc.Spec.LoadBalancerClass == nil {
		return serveUnclassed
	}
	return *svc.Spec.LoadBalancerClass == Class
}

// Key is the allocator's name for a Service.
func Key(namespace, name string) string { return namespace + "/" + name }

// Request turns a Service into an allocation request. A malformed address
// request is an error that says what to fix.
func Request(svc *corev1.Service, nsLabels map[string]string) (ipam.Request, error) {
	req := ipam.Request{
		Key:                 Key(svc.Namespace, svc.Name),
		Namespace:           svc.Namespace,
		Labels:              svc.Labels,
		NamespaceLabels:     nsLabels,
		Pool:                strings.TrimSpace(svc.Annotations[AnnotationPool]),
		SharingKey:          strings.TrimSpace(svc.Annotations[AnnotationSharing]),
		ShareWithNamespaces: splitNamespaces(svc.Annotations[AnnotationSharingNamespaces]),
		Local:               svc.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal,
		Selector:            labels.SelectorFromSet(svc.Spec.Selector).String(),
	}
	for _, f := range svc.Spec.IPFamilies {
		if f == corev1.IPv6Protocol {
			req.Families = append(req.Families, ipam.IPv6)
		} else {
			req.Families = append(req.Families, ipam.IPv4)
		}
	}
	if p := svc.Spec.IPFamilyPolicy; p != nil {
		switch *p {
		case corev1.IPFamilyPolicyPreferDualStack:
			req.Policy = ipam.PreferDualStack
		case corev1.IPFamilyPolicyRequireDualStack:
			req.Policy = ipam.RequireDualStack
		}
	}
	for _, p := range svc.Spec.Ports {
		proto := string(p.Protocol)
		if proto == "" {
			proto = string(corev1.ProtocolTCP)
		}
		req.Ports = append(req.Ports, ipam.Port{Protocol: proto, Port: p.Port})
	}
	var asked []string
	if v := strings.TrimSpace(svc.Annotations[AnnotationIPs]); v != "" {
		if svc.Spec.LoadBalancerIP != "" {
			return req, fmt.Errorf("both spec.loadBalancerIP and annotation %s are set; use one", AnnotationIPs)
		}
		asked = strings.Split(v, ",")
	} else if svc.Spec.LoadBalancerIP != "" {
		asked = []string{svc.Spec.LoadBalancerIP}
	}
	for _, s := range asked {
		a, err := netip.ParseAddr(strings.TrimSpace(s))
		if err != nil || a.Zone() != "" {
			return req, fmt.Errorf("requested address %q is not an IP address", strings.TrimSpace(s))
		}
		req.IPs = append(req.IPs, a.Unmap())
	}
	return req, nil
}

// StatusAddrs returns the addresses in the Service's status, sorted, and
// whether the status holds anything that is not a plain address (a hostname
// or garbage), which Berth never writes.
func StatusAddrs(svc *corev1.Service) ([]netip.Addr, bool) {
	var out []netip.Addr
	foreign := false
	for _, ing := range svc.Status.LoadBalancer.Ingress {
		a, err := netip.ParseAddr(ing.IP)
		if err != nil {
			foreign = true
			continue
		}
		out = append(out, a.Unmap())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Less(out[j]) })
	return out, foreign
}

// Ingress is the status Berth writes for the given addresses.
func Ingress(ips []ipam.Assigned) []corev1.LoadBalancerIngress {
	vip := corev1.LoadBalancerIPModeVIP
	out := make([]corev1.LoadBalancerIngress, len(ips))
	for i, ip := range ips {
		out[i] = corev1.LoadBalancerIngress{IP: ip.Addr.String(), IPMode: &vip}
	}
	return out
}

// splitNamespaces reads a comma-separated namespace list.
func splitNamespaces(v string) []string {
	var out []string
	for _, ns := range strings.Split(v, ",") {
		if ns = strings.TrimSpace(ns); ns != "" {
			out = append(out, ns)
		}
	}
	return out
}
