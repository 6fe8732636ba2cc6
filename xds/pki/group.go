package pki

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
)

// Group kinds: the first segment of a node group.
const (
	// GatewayGroupKind prefixes the node group of a Gateway's Envoys: gateway/<namespace>/<name>.
	GatewayGroupKind = "gateway"
	// IngressGroupKind prefixes the node group of an IngressClass's Envoys: ingress/<ingressclass>.
	IngressGroupKind = "ingress"
)

// GroupURIPrefix starts the URI SAN that names a client certificate's node group.
// The rest is the group's segments, each path-escaped, joined by "/":
// spiffe://berth.dev/group/gateway/<namespace>/<name> or spiffe://berth.dev/group/ingress/<class>.
// Valid segments are DNS names, so escaping changes nothing for them; it is there so that no
// input can smuggle a "/" or a "?" into another segment. The result is a valid SPIFFE ID.
const GroupURIPrefix = "spiffe://" + trustDomain + groupPath

const (
	trustDomain = "berth.dev"
	groupPath   = "/group/"
)

// GatewayGroup returns the node group of a Gateway's Envoys.
func GatewayGroup(namespace, name string) string {
	return GatewayGroupKind + "/" + namespace + "/" + name
}

// IngressGroup returns the node group of the Envoys serving an IngressClass.
func IngressGroup(ingressClass string) string {
	return IngressGroupKind + "/" + ingressClass
}

// ValidateGroup checks that group is gateway/<namespace>/<name> (a DNS label and a DNS
// subdomain, as Kubernetes names them) or ingress/<ingressclass> (a DNS subdomain).
func ValidateGroup(group string) error {
	if group == "" {
		return errors.New("node group is empty: want gateway/<namespace>/<name> or ingress/<ingressclass>")
	}
	parts := strings.Split(group, "/")
	switch parts[0] {
	case GatewayGroupKind:
		if len(parts) != 3 {
			return fmt.Errorf("node group %q: want gateway/<namespace>/<name>", group)
		}
		if errs := validation.IsDNS1123Label(parts[1]); len(errs) > 0 {
			return fmt.Errorf("node group %q: namespace: %s", group, strings.Join(errs, "; "))
		}
		if errs := validation.IsDNS1123Subdomain(parts[2]); len(errs) > 0 {
			return fmt.Errorf("node group %q: gateway name: %s", group, strings.Join(errs, "; "))
		}
	case IngressGroupKind:
		if len(parts) != 2 {
			return fmt.Errorf("node group %q: want ingress/<ingressclass>", group)
		}
		if errs := validation.IsDNS1123Subdomain(parts[1]); len(errs) > 0 {
			return fmt.Errorf("node group %q: ingress class: %s", group, strings.Join(errs, "; "))
		}
	default:
		return fmt.Errorf("node group %q: kind %q is neither %q nor %q", group, parts[0], GatewayGroupKind, IngressGroupKind)
	}
	return nil
}

// GroupURI returns the URI SAN that names group in a client certificate.
func GroupURI(group string) (*url.URL, error) {
	if err := ValidateGroup(group); err != nil {
		return nil, err
	}
	segs := strings.Split(group, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	raw := GroupURIPrefix + strings.Join(segs, "/")
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("node group %q: build URI: %w", group, err)
	}
	return u, nil
}

// ParseGroupURI returns the node group a URI SAN names, or an error when the URI is not
// exactly spiffe://berth.dev/group/<segments> with a valid group.
func ParseGroupURI(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("group URI %q: %w", raw, err)
	}
	return groupFromURL(u)
}

func groupFromURL(u *url.URL) (string, error) {
	if u.Scheme != "spiffe" || u.Host != trustDomain || u.User != nil || u.Opaque != "" ||
		u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || u.RawFragment != "" {
		return "", fmt.Errorf("group URI %q: want %s<group> with no user, port, query or fragment", u.Redacted(), GroupURIPrefix)
	}
	path := u.EscapedPath()
	rest, ok := strings.CutPrefix(path, groupPath)
	if !ok {
		return "", fmt.Errorf("group URI %q: path %q does not start with %q", u.Redacted(), path, groupPath)
	}
	segs := strings.Split(rest, "/")
	for i, s := range segs {
		dec, err := url.PathUnescape(s)
		if err != nil {
			return "", fmt.Errorf("group URI %q: segment %q: %w", u.Redacted(), s, err)
		}
		if strings.Contains(dec, "/") {
			return "", fmt.Errorf("group URI %q: segment %q hides a '/'", u.Redacted(), s)
		}
		segs[i] = dec
	}
	group := strings.Join(segs, "/")
	if err := ValidateGroup(group); err != nil {
		return "", fmt.Errorf("group URI %q: %w", u.Redacted(), err)
	}
	return group, nil
}

// GroupFromCert returns the node group named by cert's URI SANs. A certificate must name
// exactly one group: none, several, or a malformed group URI is an error, so that a client
// certificate never grants more than one group's configuration.
func GroupFromCert(cert *x509.Certificate) (string, error) {
	if cert == nil {
		return "", errors.New("no client certificate")
	}
	var group string
	n := 0
	for _, u := range cert.URIs {
		if u.Scheme != "spiffe" || u.Host != trustDomain || !strings.HasPrefix(u.EscapedPath(), groupPath) {
			continue
		}
		g, err := groupFromURL(u)
		if err != nil {
			return "", fmt.Errorf("certificate %q: %w", cert.Subject.CommonName, err)
		}
		group = g
		n++
	}
	switch n {
	case 0:
		return "", fmt.Errorf("certificate %q names no node group (no URI SAN starting with %s)", cert.Subject.CommonName, GroupURIPrefix)
	case 1:
		return group, nil
	default:
		return "", fmt.Errorf("certificate %q names %d node groups; a client certificate must name exactly one", cert.Subject.CommonName, n)
	}
}
