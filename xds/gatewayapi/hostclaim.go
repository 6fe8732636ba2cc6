package gatewayapi

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"strings"
	"time"

	networkingv1 "k8s.io/api/networking/v1"
)

// IngressHostClaimAnnotation on a Berth IngressClass says who may serve a
// host among the Ingresses of that class:
//
//   - "any" (or unset): every Ingress of the class adds its paths to the
//     host, whatever its namespace, so a longer path from another namespace
//     takes part of a host's traffic (as ingress-nginx does);
//   - "first-namespace": a host belongs to the namespace of the oldest
//     Ingress that names it (ties by namespace name), and rules of other
//     namespaces' Ingresses for that host are not served.
//
// The catch-all (rules without a host and spec.defaultBackend) is claimed
// like a host; a host under another namespace's older wildcard
// ("*.example.com") belongs to that namespace. The IngressClass is cluster-scoped, so only the cluster's
// administrators choose.
const IngressHostClaimAnnotation = "berth.dev/ingress-host-claim"

// Values of IngressHostClaimAnnotation.
const (
	HostClaimAny            = "any"
	HostClaimFirstNamespace = "first-namespace"
)

// ingressHosts holds, for an IngressClass in first-namespace mode, the
// namespace each host belongs to; nil means hosts are shared.
type ingressHosts map[string]hostHolder

type hostHolder struct {
	namespace string
	created   time.Time
}

// parseHostClaim reads the class's annotation: whether hosts are claimed
// by the first namespace, and an error for a value it does not know (the
// class then shares hosts, as before the annotation existed).
func parseHostClaim(ic *networkingv1.IngressClass) (firstNamespace bool, err error) {
	switch v := ic.Annotations[IngressHostClaimAnnotation]; v {
	case "", HostClaimAny:
		return false, nil
	case HostClaimFirstNamespace:
		return true, nil
	default:
		return false, fmt.Errorf("IngressClass %s: annotation %s is %q, not %q or %q; hosts are shared between namespaces until it is fixed",
			ic.Name, IngressHostClaimAnnotation, truncate(v, 64), HostClaimAny, HostClaimFirstNamespace)
	}
}

// before reports whether claim a came first: older, or as old and of the
// first namespace by name.
func (a hostHolder) before(b hostHolder) bool {
	return a.created.Before(b.created) || (a.created.Equal(b.created) && a.namespace < b.namespace)
}

// claim records that ing names host; the oldest Ingress's namespace holds
// it, and of two as old, the first namespace by name.
func (c ingressHosts) claim(host string, ing *networkingv1.Ingress) {
	n := hostHolder{namespace: ing.Namespace, created: ing.CreationTimestamp.Time}
	if h, ok := c[host]; !ok || n.before(h) {
		c[host] = n
	}
}

// holder is who holds host: the first claim of the host itself or of a
// wildcard that covers it. Envoy sends a request to the most specific
// name, so without the second a newer www.example.com of one namespace
// would take traffic from an older *.example.com of another. The
// catch-all covers no named host: every named host is taken out of it.
func (c ingressHosts) holder(host string) (hostHolder, bool) {
	h, ok := c[host]
	if host == "" {
		return h, ok
	}
	for w, wh := range c {
		if w != host && coversHost(w, host) && (!ok || wh.before(h)) {
			h, ok = wh, true
		}
	}
	return h, ok
}

// coversHost reports whether wildcard w ("*.example.com") matches host
// (a name or a narrower wildcard), at any depth as Envoy's domains do.
func coversHost(w, host string) bool {
	suffix, ok := strings.CutPrefix(w, "*")
	if !ok || suffix == "" {
		return false
	}
	return strings.HasSuffix(host, suffix) && len(host) > len(suffix)
}

// claimAll records every host ing names: its rules' hosts, "" for rules
// without one and for the default backend.
func (c ingressHosts) claimAll(ing *networkingv1.Ingress) {
	for _, r := range ing.Spec.Rules {
		if r.HTTP != nil {
			c.claim(r.Host, ing)
		}
	}
	if ing.Spec.DefaultBackend != nil {
		c.claim("", ing)
	}
}

// refusal is why namespace ns may not serve host (who holds it), or ""
// when it may. It
// names the namespace holding the host and nothing in it: which Ingress
// holds it is that namespace's business.
func (c ingressHosts) refusal(host, ns string) string {
	if c == nil {
		return ""
	}
	h, ok := c.holder(host)
	if !ok || h.namespace == ns {
		return ""
	}
	what := fmt.Sprintf("host %q", host)
	if own, ok := c[host]; !ok || own.namespace != h.namespace || !own.created.Equal(h.created) {
		what += " (under a wildcard)"
	}
	if host == "" {
		what = "the catch-all (rules without a host and defaultBackend)"
	}
	return fmt.Sprintf("%s belongs to namespace %s, whose Ingresses of this class named it first (%s: %s)",
		what, h.namespace, IngressHostClaimAnnotation, HostClaimFirstNamespace)
}

// tlsRefusal is why namespace ns may not add a certificate to the class's
// HTTPS listener, or "": the certificate (its leaf's DNS names) or the
// entry's hosts name a host another namespace holds. All the class's
// certificates are in one filter chain, where Envoy picks one by the
// client's SNI: another namespace's certificate for a held host could be
// the one served for it.
func (c ingressHosts) tlsRefusal(hosts []string, chain []byte, ns string) string {
	if c == nil {
		return ""
	}
	names := append([]string(nil), hosts...)
	if b, _ := pem.Decode(chain); b != nil {
		if leaf, err := x509.ParseCertificate(b.Bytes); err == nil {
			names = append(names, leaf.DNSNames...)
		}
	}
	for _, h := range names {
		if h = strings.ToLower(h); h == "" {
			continue
		}
		if why := c.refusal(h, ns); why != "" {
			return why
		}
	}
	return ""
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
