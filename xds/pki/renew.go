package pki

import (
	"crypto/x509"
	"fmt"
	"net"
	"slices"
	"time"
)

// Decision says whether a certificate must be (re)issued now, why, and when to look again.
type Decision struct {
	// Renew is true when the certificate must be replaced now.
	Renew bool
	// Reason says why in a sentence, for an event or a log line; empty when Renew is false.
	Reason string
	// At is when the certificate falls due for renewal (its NotAfter minus a third of its
	// lifetime); a caller that keeps it requeues for then.
	At time.Time
}

// RenewAt returns when cert falls due: once less than a third of its lifetime is left.
func RenewAt(cert *x509.Certificate) time.Time {
	life := cert.NotAfter.Sub(cert.NotBefore)
	return cert.NotAfter.Add(-life / 3)
}

// DueForRenewal reports whether less than a third of cert's lifetime is left at now.
func DueForRenewal(cert *x509.Certificate, now time.Time) bool {
	return !now.Before(RenewAt(cert))
}

// CheckCA decides whether the CA must be replaced.
func CheckCA(ca *x509.Certificate, now time.Time) Decision {
	if ca == nil {
		return Decision{Renew: true, Reason: "no CA certificate"}
	}
	return lifetimeDecision("CA", ca, now)
}

// CheckServer decides whether the xDS server's certificate must be reissued: it is missing,
// not signed by ca, due for renewal, or its names differ from want (the Service's names or
// IPs changed).
func CheckServer(cert, ca *x509.Certificate, want ServerNames, now time.Time) Decision {
	if d, done := checkLeaf("server", cert, ca, now); done {
		return d
	}
	if !sameStrings(cert.DNSNames, want.DNSNames) || !sameIPs(cert.IPAddresses, want.IPs) {
		return Decision{Renew: true, Reason: fmt.Sprintf("server certificate names %v %v, want %v %v",
			cert.DNSNames, cert.IPAddresses, want.DNSNames, want.IPs), At: RenewAt(cert)}
	}
	return lifetimeDecision("server certificate", cert, now)
}

// CheckClient decides whether a node group's client certificate must be reissued: it is
// missing, not signed by ca, due for renewal, or names another group.
func CheckClient(cert, ca *x509.Certificate, group string, now time.Time) Decision {
	if d, done := checkLeaf("client", cert, ca, now); done {
		return d
	}
	got, err := GroupFromCert(cert)
	if err != nil {
		return Decision{Renew: true, Reason: err.Error(), At: RenewAt(cert)}
	}
	if got != group {
		return Decision{Renew: true, Reason: fmt.Sprintf("client certificate names group %q, want %q", got, group), At: RenewAt(cert)}
	}
	return lifetimeDecision("client certificate", cert, now)
}

func checkLeaf(kind string, cert, ca *x509.Certificate, now time.Time) (Decision, bool) {
	if cert == nil {
		return Decision{Renew: true, Reason: "no " + kind + " certificate"}, true
	}
	if ca == nil {
		return Decision{Renew: true, Reason: "no CA certificate to check the " + kind + " certificate against", At: RenewAt(cert)}, true
	}
	if err := cert.CheckSignatureFrom(ca); err != nil {
		return Decision{Renew: true, Reason: fmt.Sprintf("%s certificate is not signed by the current CA %q", kind, ca.Subject.CommonName), At: RenewAt(cert)}, true
	}
	return Decision{}, false
}

func lifetimeDecision(what string, cert *x509.Certificate, now time.Time) Decision {
	at := RenewAt(cert)
	switch {
	case !now.Before(cert.NotAfter):
		return Decision{Renew: true, Reason: fmt.Sprintf("%s expired at %s", what, cert.NotAfter.UTC().Format(time.RFC3339)), At: at}
	case now.Before(cert.NotBefore):
		return Decision{Renew: true, Reason: fmt.Sprintf("%s is not valid before %s", what, cert.NotBefore.UTC().Format(time.RFC3339)), At: at}
	case !now.Before(at):
		return Decision{Renew: true, Reason: fmt.Sprintf("%s has less than a third of its lifetime left (expires %s)", what, cert.NotAfter.UTC().Format(time.RFC3339)), At: at}
	}
	return Decision{At: at}
}

func sameStrings(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(slices.Compact(a), slices.Compact(b))
}

func sameIPs(a, b []net.IP) bool {
	norm := func(ips []net.IP) []string {
		out := make([]string, 0, len(ips))
		for _, ip := range ips {
			out = append(out, ip.String())
		}
		return out
	}
	return sameStrings(norm(a), norm(b))
}
