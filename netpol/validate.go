package netpol

import (
	"errors"
	"fmt"
	"net/netip"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Validate reports the input that the API server would reject or that makes
// a connection ambiguous (two pods with one IP). Allowed never fails on such
// input, but its answer for it is only the documented fallback.
func Validate(policies []networkingv1.NetworkPolicy, pods []Pod) error {
	var errs []error
	owner := map[netip.Addr]string{}
	for _, pod := range pods {
		name := pod.Namespace + "/" + pod.Name
		for _, ip := range pod.IPs {
			ip = ip.Unmap()
			if prev, ok := owner[ip]; ok {
				errs = append(errs, fmt.Errorf("pod %s: IP %s is also pod %s's", name, ip, prev))
				continue
			}
			owner[ip] = name
		}
	}
	for i := range policies {
		if err := validatePolicy(&policies[i]); err != nil {
			errs = append(errs, fmt.Errorf("policy %s/%s: %w", policies[i].Namespace, policies[i].Name, err))
		}
	}
	return errors.Join(errs...)
}

func validatePolicy(p *networkingv1.NetworkPolicy) error {
	var errs []error
	if _, err := metav1.LabelSelectorAsSelector(&p.Spec.PodSelector); err != nil {
		errs = append(errs, fmt.Errorf("podSelector: %w", err))
	}
	for _, t := range p.Spec.PolicyTypes {
		if t != networkingv1.PolicyTypeIngress && t != networkingv1.PolicyTypeEgress {
			errs = append(errs, fmt.Errorf("policyTypes: unknown type %q", t))
		}
	}
	for r, rule := range p.Spec.Ingress {
		errs = append(errs, validateRule(fmt.Sprintf("ingress[%d]", r), rule.From, rule.Ports))
	}
	for r, rule := range p.Spec.Egress {
		errs = append(errs, validateRule(fmt.Sprintf("egress[%d]", r), rule.To, rule.Ports))
	}
	return errors.Join(errs...)
}

func validateRule(where string, peers []networkingv1.NetworkPolicyPeer, ports []networkingv1.NetworkPolicyPort) error {
	var errs []error
	for i, peer := range peers {
		if err := validatePeer(peer); err != nil {
			errs = append(errs, fmt.Errorf("%s peer %d: %w", where, i, err))
		}
	}
	for i, port := range ports {
		if err := validatePort(port); err != nil {
			errs = append(errs, fmt.Errorf("%s port %d: %w", where, i, err))
		}
	}
	return errors.Join(errs...)
}

func validatePeer(p networkingv1.NetworkPolicyPeer) error {
	if p.IPBlock != nil {
		if p.PodSelector != nil || p.NamespaceSelector != nil {
			return errors.New("ipBlock cannot be combined with a selector")
		}
		cidr, err := netip.ParsePrefix(p.IPBlock.CIDR)
		if err != nil {
			return fmt.Errorf("ipBlock cidr: %w", err)
		}
		for _, ex := range p.IPBlock.Except {
			e, err := netip.ParsePrefix(ex)
			if err != nil {
				return fmt.Errorf("ipBlock except: %w", err)
			}
			if e.Bits() < cidr.Bits() || !cidr.Masked().Contains(e.Addr()) {
				return fmt.Errorf("ipBlock except %s is not inside cidr %s", ex, p.IPBlock.CIDR)
			}
		}
		return nil
	}
	if p.PodSelector == nil && p.NamespaceSelector == nil {
		return errors.New("set a podSelector, a namespaceSelector or an ipBlock")
	}
	for _, sel := range []*metav1.LabelSelector{p.PodSelector, p.NamespaceSelector} {
		if sel == nil {
			continue
		}
		if _, err := metav1.LabelSelectorAsSelector(sel); err != nil {
			return err
		}
	}
	return nil
}

func validatePort(p networkingv1.NetworkPolicyPort) error {
	if p.Protocol != nil {
		switch *p.Protocol {
		case corev1.ProtocolTCP, corev1.ProtocolUDP, corev1.ProtocolSCTP:
		default:
			return fmt.Errorf("protocol %q: use TCP, UDP or SCTP", *p.Protocol)
		}
	}
	if p.Port == nil {
		if p.EndPort != nil {
			return errors.New("endPort needs a numeric port")
		}
		return nil
	}
	if p.Port.Type == intstr.String {
		if p.EndPort != nil {
			return errors.New("endPort needs a numeric port, not a named one")
		}
		if p.Port.StrVal == "" {
			return errors.New("empty port name")
		}
		return nil
	}
	if p.Port.IntVal < 1 || p.Port.IntVal > 65535 {
		return fmt.Errorf("port %d is not in 1-65535", p.Port.IntVal)
	}
	if p.EndPort != nil && (*p.EndPort < p.Port.IntVal || *p.EndPort > 65535) {
		return fmt.Errorf("endPort %d must be between port %d and 65535", *p.EndPort, p.Port.IntVal)
	}
	return nil
}
