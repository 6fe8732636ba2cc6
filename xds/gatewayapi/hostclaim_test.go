package gatewayapi

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// claimResources is a Berth IngressClass "shared" with the host-claim
// annotation set to mode ("" leaves it out) and Service web:80 in each of
// the namespaces of ings.
func claimResources(mode string, ings ...networkingv1.Ingress) *Resources {
	ic := networkingv1.IngressClass{ObjectMeta: metav1.ObjectMeta{Name: "shared"}, Spec: networkingv1.IngressClassSpec{Controller: IngressControllerName}}
	if mode != "" {
		ic.Annotations = map[string]string{IngressHostClaimAnnotation: mode}
	}
	res := &Resources{IngressClasses: []networkingv1.IngressClass{ic}, Ingresses: ings}
	for _, ing := range ings {
		res.Services = append(res.Services, service(ing.Namespace, "web", 80))
	}
	return res
}

// hostIngress is Ingress ns/name of class "shared", created at minute age,
// sending host's path to web:80.
func hostIngress(ns, name string, age int, host, path string) networkingv1.Ingress {
	prefix := networkingv1.PathTypePrefix
	return networkingv1.Ingress{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, CreationTimestamp: metav1.NewTime(time.Date(2026, 1, 1, 0, age, 0, 0, time.UTC))},
		Spec: networkingv1.IngressSpec{IngressClassName: ptr("shared"), Rules: []networkingv1.IngressRule{{
			Host: host,
			IngressRuleValue: networkingv1.IngressRuleValue{HTTP: &networkingv1.HTTPIngressRuleValue{Paths: []networkingv1.HTTPIngressPath{{
				Path: path, PathType: &prefix,
				Backend: networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{Name: "web", Port: networkingv1.ServiceBackendPort{Number: 80}}},
			}}}},
		}}},
	}
}

// served lists "host path -> cluster" for every route of the class's HTTP
// listener.
func served(t *testing.T, out *Result) []string {
	t.Helper()
	var got []string
	for _, g := range out.Groups {
		for _, l := range g.HTTP {
			for _, r := range l.Routes {
				got = append(got, r.Hostname+" "+r.Path.Value+" -> "+r.Backends[0].Cluster)
			}
		}
	}
	slices.Sort(got)
	return got
}

func problems(out *Result, ns string) []string {
	for _, r := range out.Ingresses {
		if r.Namespace == ns {
			return r.Problems
		}
	}
	return nil
}

// TestIngressHostClaim follows one host through the modes: shared, a newer
// namespace's longer path takes part of it; first-namespace, it is refused
// with a message naming the holding namespace and none of its objects;
// once the holder's Ingress is gone, the other namespace gets the host.
func TestIngressHostClaim(t *testing.T) {
	owner := hostIngress("shop", "secret-name", 0, "shop.example.com", "/")
	grab := hostIngress("intruder", "grab", 5, "shop.example.com", "/checkout")

	out := Translate(claimResources("", owner, grab), Options{})
	want := []string{
		"shop.example.com / -> shop/web/80",
		"shop.example.com /checkout -> intruder/web/80",
	}
	if got := served(t, out); !slices.Equal(got, want) {
		t.Errorf("shared: served %q, want %q", got, want)
	}
	if p := problems(out, "intruder"); len(p) != 0 {
		t.Errorf("shared: intruder told %q, want nothing", p)
	}

	out = Translate(claimResources(HostClaimFirstNamespace, owner, grab), Options{})
	want = []string{"shop.example.com / -> shop/web/80"}
	if got := served(t, out); !slices.Equal(got, want) {
		t.Errorf("first-namespace: served %q, want %q", got, want)
	}
	p := problems(out, "intruder")
	if len(p) != 1 || !strings.Contains(p[0], "namespace shop") || !strings.Contains(p[0], "not served") {
		t.Errorf("first-namespace: intruder told %q, want one problem naming namespace shop", p)
	}
	if len(p) == 1 && strings.Contains(p[0], "secret-name") {
		t.Errorf("the refusal names the holder's Ingress: %q", p[0])
	}
	if p := problems(out, "shop"); len(p) != 0 {
		t.Errorf("first-namespace: shop told %q, want nothing", p)
	}

	// Same age: the first namespace by name holds it, whichever is listed first.
	a := hostIngress("b-team", "x", 5, "tie.example.com", "/")
	b := hostIngress("a-team", "x", 5, "tie.example.com", "/a")
	out = Translate(claimResources(HostClaimFirstNamespace, a, b), Options{})
	want = []string{"tie.example.com /a -> a-team/web/80"}
	if got := served(t, out); !slices.Equal(got, want) {
		t.Errorf("tie: served %q, want %q", got, want)
	}

	// The holder leaves: the host is free for the next namespace.
	out = Translate(claimResources(HostClaimFirstNamespace, grab), Options{})
	want = []string{"shop.example.com /checkout -> intruder/web/80"}
	if got := served(t, out); !slices.Equal(got, want) {
		t.Errorf("after the holder left: served %q, want %q", got, want)
	}
	if p := problems(out, "intruder"); len(p) != 0 {
		t.Errorf("after the holder left: intruder told %q, want nothing", p)
	}
}

// TestIngressHostClaimWildcards: an older wildcard holds the names under
// it against other namespaces; a newer wildcard takes nothing from an
// older name (Envoy prefers the name), so it is served.
func TestIngressHostClaimWildcards(t *testing.T) {
	wild := hostIngress("shop", "w", 0, "*.shop.example.com", "/")
	under := hostIngress("intruder", "u", 5, "www.shop.example.com", "/")
	deeper := hostIngress("other", "d", 6, "a.b.shop.example.com", "/")
	out := Translate(claimResources(HostClaimFirstNamespace, wild, under, deeper), Options{})
	want := []string{"*.shop.example.com / -> shop/web/80"}
	if got := served(t, out); !slices.Equal(got, want) {
		t.Errorf("served %q, want %q", got, want)
	}

	name := hostIngress("shop", "n", 0, "www.example.com", "/")
	newerWild := hostIngress("intruder", "w", 5, "*.example.com", "/")
	out = Translate(claimResources(HostClaimFirstNamespace, name, newerWild), Options{})
	want = []string{"*.example.com / -> intruder/web/80", "www.example.com / -> shop/web/80"}
	if got := served(t, out); !slices.Equal(got, want) {
		t.Errorf("served %q, want %q", got, want)
	}

	for _, tc := range []struct {
		w, host string
		want    bool
	}{
		{"*.example.com", "a.example.com", true},
		{"*.example.com", "a.b.example.com", true},
		{"*.example.com", "*.a.example.com", true},
		{"*.example.com", "example.com", false},
		{"*.example.com", ".example.com", false},
		{"example.com", "a.example.com", false},
		{"*", "a.example.com", false},
		{"", "a.example.com", false},
	} {
		if got := coversHost(tc.w, tc.host); got != tc.want {
			t.Errorf("coversHost(%q, %q) = %v, want %v", tc.w, tc.host, got, tc.want)
		}
	}
}

// TestIngressHostClaimUnknownMode: a value Berth does not know shares hosts
// as before (nothing that worked is refused) and says so on each Ingress.
func TestIngressHostClaimUnknownMode(t *testing.T) {
	owner := hostIngress("shop", "s", 0, "shop.example.com", "/")
	grab := hostIngress("intruder", "g", 5, "shop.example.com", "/checkout")
	out := Translate(claimResources("first-namespaces", owner, grab), Options{})
	if got := served(t, out); len(got) != 2 {
		t.Errorf("served %q, want both routes", got)
	}
	for _, ns := range []string{"shop", "intruder"} {
		p := problems(out, ns)
		if len(p) != 1 || !strings.Contains(p[0], `"first-namespaces"`) {
			t.Errorf("%s told %q, want the bad annotation named", ns, p)
		}
	}
}

// tlsSecret is a kubernetes.io/tls Secret ns/name whose self-signed
// certificate names dnsNames.
func tlsSecret(t *testing.T, ns, name string, dnsNames ...string) corev1.Secret {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: dnsNames[0]}, DNSNames: dnsNames,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Type: corev1.SecretTypeTLS, Data: map[string][]byte{
		corev1.TLSCertKey:       pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		corev1.TLSPrivateKeyKey: pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}),
	}}
}

func httpsCerts(out *Result) []string {
	var got []string
	for _, g := range out.Groups {
		for _, l := range g.HTTP {
			if l.TLS != nil {
				for _, c := range l.TLS.Certificates {
					got = append(got, c.Name)
				}
			}
		}
	}
	return got
}

// TestIngressHostClaimTLS: every certificate of a class is in one filter
// chain, where Envoy picks one by SNI; in first-namespace mode a
// certificate (by its DNS names or the entry's hosts) for a host another
// namespace holds is not served, and the entry's Ingress is told why.
func TestIngressHostClaimTLS(t *testing.T) {
	owner := hostIngress("shop", "s", 0, "shop.example.com", "/")
	grab := hostIngress("intruder", "g", 5, "intruder.example.com", "/")
	grab.Spec.TLS = []networkingv1.IngressTLS{
		{Hosts: []string{"intruder.example.com"}, SecretName: "for-shop"}, // its certificate names shop.example.com
		{Hosts: []string{"shop.example.com"}, SecretName: "own"},          // the entry names it
		{Hosts: []string{"intruder.example.com"}, SecretName: "own"},
	}
	secrets := []corev1.Secret{
		tlsSecret(t, "intruder", "for-shop", "shop.example.com"),
		tlsSecret(t, "intruder", "own", "intruder.example.com"),
	}
	res := claimResources(HostClaimFirstNamespace, owner, grab)
	res.Secrets = secrets
	out := Translate(res, Options{})
	if got, want := httpsCerts(out), []string{"intruder/own"}; !slices.Equal(got, want) {
		t.Errorf("first-namespace: certificates %q, want %q", got, want)
	}
	p := problems(out, "intruder")
	if len(p) != 2 || !strings.HasPrefix(p[0], "tls[0]: Secret intruder/for-shop: host \"shop.example.com\" belongs to namespace shop") ||
		!strings.HasPrefix(p[1], "tls[1]: Secret intruder/own: host \"shop.example.com\" belongs to namespace shop") {
		t.Errorf("first-namespace: intruder told %q, want tls[0] and tls[1] refused for namespace shop's host", p)
	}

	res = claimResources("", owner, grab)
	res.Secrets = secrets
	if got, want := httpsCerts(Translate(res, Options{})), []string{"intruder/for-shop", "intruder/own"}; !slices.Equal(got, want) {
		t.Errorf("shared: certificates %q, want %q", got, want)
	}
}
