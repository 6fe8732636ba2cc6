package pki

import (
	"crypto/x509"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func newTestCA(t *testing.T) *CA {
	t.Helper()
	ca, err := NewCA("berth-xds-ca", t0, DefaultCALifetime)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func TestIssueVerifies(t *testing.T) {
	ca := newTestCA(t)
	names := ServerNames{
		DNSNames: []string{"berth-xds", "berth-xds.berth-system", "berth-xds.berth-system.svc"},
		IPs:      []net.IP{net.ParseIP("10.96.0.20"), net.ParseIP("fd00::20")},
	}
	srv, err := ca.IssueServer(names, t0, DefaultLeafLifetime)
	if err != nil {
		t.Fatal(err)
	}
	cli, err := ca.IssueClient(GatewayGroup("default", "web"), t0, DefaultLeafLifetime)
	if err != nil {
		t.Fatal(err)
	}
	at := t0.Add(time.Hour)
	roots := Pool(ca.Cert)
	if _, err := srv.Cert.Verify(x509.VerifyOptions{DNSName: "berth-xds.berth-system.svc", Roots: roots, CurrentTime: at}); err != nil {
		t.Errorf("server certificate does not verify for its DNS name: %v", err)
	}
	if _, err := srv.Cert.Verify(x509.VerifyOptions{DNSName: "10.96.0.20", Roots: roots, CurrentTime: at}); err != nil {
		t.Errorf("server certificate does not verify for its IP: %v", err)
	}
	if _, err := srv.Cert.Verify(x509.VerifyOptions{Roots: roots, CurrentTime: at, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err == nil {
		t.Errorf("server certificate verifies as a client certificate")
	}
	if _, err := cli.Cert.Verify(x509.VerifyOptions{Roots: roots, CurrentTime: at, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("client certificate does not verify: %v", err)
	}
	if _, err := cli.Cert.Verify(x509.VerifyOptions{Roots: roots, CurrentTime: at}); err == nil {
		t.Errorf("client certificate verifies as a server certificate")
	}
	other := newTestCA(t)
	if _, err := cli.Cert.Verify(x509.VerifyOptions{Roots: Pool(other.Cert), CurrentTime: at, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err == nil {
		t.Errorf("client certificate verifies against another CA")
	}
	if g, err := GroupFromCert(cli.Cert); err != nil || g != "gateway/default/web" {
		t.Errorf("GroupFromCert = %q, %v", g, err)
	}
	if _, err := GroupFromCert(srv.Cert); err == nil {
		t.Errorf("GroupFromCert(server certificate) = nil error")
	}
	if pub := srv.Cert.PublicKeyAlgorithm; pub != x509.ECDSA {
		t.Errorf("server key algorithm %v, want ECDSA", pub)
	}
}

func TestIssueRefuses(t *testing.T) {
	ca := newTestCA(t)
	if _, err := ca.IssueClient("gateway/default", t0, DefaultLeafLifetime); err == nil {
		t.Error("IssueClient with a bad group succeeded")
	}
	if _, err := ca.IssueServer(ServerNames{}, t0, DefaultLeafLifetime); err == nil {
		t.Error("IssueServer with no names succeeded")
	}
	if _, err := ca.IssueClient("ingress/berth", t0.Add(DefaultCALifetime), DefaultLeafLifetime); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Errorf("IssueClient from an expired CA: %v", err)
	}
	kp, err := ca.IssueClient("ingress/berth", t0.Add(DefaultCALifetime-time.Hour), DefaultLeafLifetime)
	if err != nil {
		t.Fatal(err)
	}
	if kp.Cert.NotAfter.After(ca.Cert.NotAfter) {
		t.Errorf("leaf outlives its CA: %s > %s", kp.Cert.NotAfter, ca.Cert.NotAfter)
	}
}

func TestGroupFromCertRejectsSeveralGroups(t *testing.T) {
	a, _ := GroupURI("ingress/a")
	b, _ := GroupURI("ingress/b")
	other, _ := url.Parse("spiffe://example.org/ns/x")
	if _, err := GroupFromCert(&x509.Certificate{URIs: []*url.URL{a, b}}); err == nil {
		t.Error("a certificate naming two groups was accepted")
	}
	if g, err := GroupFromCert(&x509.Certificate{URIs: []*url.URL{other, a}}); err != nil || g != "ingress/a" {
		t.Errorf("GroupFromCert with a foreign URI = %q, %v", g, err)
	}
	bad, _ := url.Parse("spiffe://berth.dev/group/gateway/x")
	if _, err := GroupFromCert(&x509.Certificate{URIs: []*url.URL{bad}}); err == nil {
		t.Error("a malformed group URI was accepted")
	}
}
