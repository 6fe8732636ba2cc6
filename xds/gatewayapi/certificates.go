package gatewayapi

import (
	"crypto/tls"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/berthnet/berth/xds/ir"
)

// resolveCertificates turns a listener's certificateRefs into IR
// certificates. Every reference must resolve to a kubernetes.io/tls Secret
// whose certificate and key parse and match, in the Gateway's namespace or
// in another one that a ReferenceGrant opens to Gateways; otherwise the
// listener's ResolvedRefs is False and it is not served (nil).
func resolveCertificates(gw *gwv1.Gateway, spec *gwv1.Listener, ix *index, unresolved func(gwv1.ListenerConditionReason, string, ...any)) *ir.TLS {
	if len(spec.TLS.CertificateRefs) == 0 {
		unresolved(gwv1.ListenerReasonInvalidCertificateRef, "HTTPS listener without tls.certificateRefs")
		return nil
	}
	out := &ir.TLS{}
	ok := true
	for i, r := range spec.TLS.CertificateRefs {
		group, kind := coreGroup, "Secret"
		if r.Group != nil {
			group = string(*r.Group)
		}
		if r.Kind != nil {
			kind = string(*r.Kind)
		}
		ns := gw.Namespace
		if r.Namespace != nil {
			ns = string(*r.Namespace)
		}
		where := fmt.Sprintf("tls.certificateRefs[%d] %s/%s", i, ns, r.Name)
		if group != coreGroup || kind != "Secret" {
			unresolved(gwv1.ListenerReasonInvalidCertificateRef, "%s: kind %s/%s is not supported; use a core Secret", where, group, kind)
			ok = false
			continue
		}
		if !ix.permitted(ref{gatewayGroup, "Gateway", gw.Namespace, coreGroup, "Secret", ns, string(r.Name)}) {
			unresolved(gwv1.ListenerReasonRefNotPermitted, "%s: no ReferenceGrant in %s allows Gateways from %s to use it", where, ns, gw.Namespace)
			ok = false
			continue
		}
		c, err := certificate(ix.secrets[nn{ns, string(r.Name)}])
		if err != nil {
			unresolved(gwv1.ListenerReasonInvalidCertificateRef, "%s: %v", where, err)
			ok = false
			continue
		}
		c.Name = ns + "/" + string(r.Name)
		out.Certificates = append(out.Certificates, c)
	}
	if !ok {
		return nil
	}
	return out
}

// certificate reads a kubernetes.io/tls Secret, checking that the chain
// and key parse and belong together so Envoy never rejects them. Berth's
// own Secrets are refused (ownSecret), whatever grants allow.
func certificate(s *corev1.Secret) (*ir.Certificate, error) {
	if s == nil {
		// Translation reads only TLS Secrets (the controller caches no
		// other type): one of another type, Berth's CA among them, is
		// missing here too.
		return nil, fmt.Errorf("no such Secret of type %s", corev1.SecretTypeTLS)
	}
	if why := ownSecret(s); why != "" {
		return nil, fmt.Errorf("%s: Berth never serves it as a certificate; use a Secret of your own", why)
	}
	if s.Type != corev1.SecretTypeTLS {
		return nil, fmt.Errorf("type is %q, want %s", s.Type, corev1.SecretTypeTLS)
	}
	chain, key := s.Data[corev1.TLSCertKey], s.Data[corev1.TLSPrivateKeyKey]
	if len(chain) == 0 || len(key) == 0 {
		return nil, fmt.Errorf("no data in %s or %s", corev1.TLSCertKey, corev1.TLSPrivateKeyKey)
	}
	if _, err := tls.X509KeyPair(chain, key); err != nil {
		return nil, fmt.Errorf("certificate and key: %w", err)
	}
	return &ir.Certificate{Chain: chain, Key: key}, nil
}

// Labels that mark Berth's own Secrets.
const (
	labelManagedBy = "app.kubernetes.io/managed-by"
	labelName      = "app.kubernetes.io/name"
	labelComponent = "app.kubernetes.io/component"
)

// ownSecret says why s is one of Berth's own Secrets, or "" when it is
// not: the xDS CA (a type of Berth's own, berth.dev/xds-ca; before an
// upgrade a kubernetes.io/tls Secret made by berth-controller), the Envoy
// fleets' xDS client certificates (made by berth-controller), and what
// the chart makes (the heartbeat key). Serving one would hand its key to
// every client of the listener: with the CA's or a fleet's, anyone could
// pose as an Envoy fleet to the xDS server and pull every Gateway's keys.
// Labels and types in the Secret's own namespace decide, so who can make
// such a Secret could only refuse it to their own listeners.
func ownSecret(s *corev1.Secret) string {
	switch {
	case strings.HasPrefix(string(s.Type), "berth.dev/"):
		return fmt.Sprintf("Secret of Berth's own type %s", s.Type)
	case s.Labels[labelManagedBy] == "berth-controller":
		return fmt.Sprintf("Secret made by berth-controller (label %s), the xDS CA's or an Envoy fleet's", labelManagedBy)
	case s.Labels[labelName] == "berth" && s.Labels[labelComponent] != "":
		return fmt.Sprintf("Secret of Berth's %s (label %s=berth)", s.Labels[labelComponent], labelName)
	}
	return ""
}
