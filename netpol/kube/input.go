// Package kube is NetworkPolicy's adapter to the API: it turns Pods,
// Namespaces, NetworkPolicies and this node's Node into netpol.Input, and
// runs the node's syncer on their events.
package kube

import (
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/berthnet/berth/netpol"
)

// PodOf is the part of a Pod policies look at; ok is false for pods that
// are not on the pod network (host network, no address yet, finished).
func PodOf(p *corev1.Pod) (netpol.Pod, bool) {
	if p.Spec.HostNetwork || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
		return netpol.Pod{}, false
	}
	out := netpol.Pod{Namespace: p.Namespace, Name: p.Name, Labels: p.Labels, Node: p.Spec.NodeName}
	ips := p.Status.PodIPs
	if len(ips) == 0 && p.Status.PodIP != "" {
		ips = []corev1.PodIP{{IP: p.Status.PodIP}}
	}
	for _, ip := range ips {
		if a, err := netip.ParseAddr(ip.IP); err == nil {
			out.IPs = append(out.IPs, a.Unmap())
		}
	}
	if len(out.IPs) == 0 {
		return netpol.Pod{}, false
	}
	for _, c := range p.Spec.Containers {
		for _, cp := range c.Ports {
			if cp.Name == "" {
				continue
			}
			if out.NamedPorts == nil {
				out.NamedPorts = map[string]netpol.ContainerPort{}
			}
			if _, dup := out.NamedPorts[cp.Name]; !dup {
				out.NamedPorts[cp.Name] = netpol.ContainerPort{Protocol: cp.Protocol, Port: cp.ContainerPort}
			}
		}
	}
	return out, true
}

// NamespaceOf is the part of a Namespace policies look at.
func NamespaceOf(n *corev1.Namespace) netpol.Namespace {
	return netpol.Namespace{Name: n.Name, Labels: n.Labels}
}

// NodeAddrs returns a node's own addresses (traffic from them reaches its
// pods) and its pod ranges.
func NodeAddrs(n *corev1.Node) ([]netip.Addr, []netip.Prefix) {
	var ips []netip.Addr
	for _, a := range n.Status.Addresses {
		if a.Type != corev1.NodeInternalIP && a.Type != corev1.NodeExternalIP {
			continue
		}
		if ip, err := netip.ParseAddr(a.Address); err == nil && !slices.Contains(ips, ip.Unmap()) {
			ips = append(ips, ip.Unmap())
		}
	}
	cidrs := n.Spec.PodCIDRs
	if len(cidrs) == 0 && n.Spec.PodCIDR != "" {
		cidrs = []string{n.Spec.PodCIDR}
	}
	var out []netip.Prefix
	for _, c := range cidrs {
		if p, err := netip.ParsePrefix(strings.TrimSpace(c)); err == nil {
			out = append(out, p.Masked())
		}
	}
	return ips, out
}

// TrimPod is a cache transform for the agent's Pod informer: it keeps only
// what PodOf reads (every pod of the cluster is cached, and most of a
// pod's object, managed fields first, is of no use here).
func TrimPod(obj any) (any, error) {
	p, ok := obj.(*corev1.Pod)
	if !ok {
		return obj, nil
	}
	out := &corev1.Pod{
		TypeMeta: p.TypeMeta,
		ObjectMeta: metav1.ObjectMeta{
			Name: p.Name, Namespace: p.Namespace, UID: p.UID, ResourceVersion: p.ResourceVersion,
			Labels: p.Labels, DeletionTimestamp: p.DeletionTimestamp,
		},
		Spec:   corev1.PodSpec{NodeName: p.Spec.NodeName, HostNetwork: p.Spec.HostNetwork},
		Status: corev1.PodStatus{Phase: p.Status.Phase, PodIP: p.Status.PodIP, PodIPs: p.Status.PodIPs},
	}
	for _, c := range p.Spec.Containers {
		var ports []corev1.ContainerPort
		for _, cp := range c.Ports {
			if cp.Name != "" {
				ports = append(ports, corev1.ContainerPort{Name: cp.Name, ContainerPort: cp.ContainerPort, Protocol: cp.Protocol})
			}
		}
		out.Spec.Containers = append(out.Spec.Containers, corev1.Container{Name: c.Name, Ports: ports})
	}
	return out, nil
}
