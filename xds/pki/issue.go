// Package pki is the certificate authority behind the xDS server's mutual TLS: a CA
// (ECDSA P-256) that the controller keeps in a Secret, the xDS server's certificate, and one
// client certificate per Envoy node group, whose URI SAN names the group (see GroupURI).
// It is pure: callers pass the time and store the PEM wherever they keep it.
package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"time"
)

// Default lifetimes. The CA outlives many leaf renewals so that rotating it is rare.
const (
	DefaultCALifetime   = 5 * 365 * 24 * time.Hour
	DefaultLeafLifetime = 90 * 24 * time.Hour
)

// backdate covers clock skew between the controller and the Envoys.
const backdate = 5 * time.Minute

// CA is a certificate authority: its certificate and private key.
type CA struct {
	Cert *x509.Certificate
	Key  *ecdsa.PrivateKey
}

// KeyPair is a certificate issued by a CA, with its private key.
type KeyPair struct {
	Cert *x509.Certificate
	Key  *ecdsa.PrivateKey
}

// ServerNames are the names the xDS server's certificate must carry: the DNS names of the
// controller's xDS Service (name, name.namespace, name.namespace.svc, ...) and its IPs.
type ServerNames struct {
	DNSNames []string
	IPs      []net.IP
}

// NewCA creates a self-signed CA valid from now for lifetime.
func NewCA(commonName string, now time.Time, lifetime time.Duration) (*CA, error) {
	if commonName == "" {
		return nil, errors.New("new CA: common name is empty")
	}
	if lifetime <= backdate {
		return nil, fmt.Errorf("new CA: lifetime %s is too short", lifetime)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("new CA: generate key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, fmt.Errorf("new CA: %w", err)
	}
	ski, err := subjectKeyID(&key.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("new CA: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: commonName},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(lifetime),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
		SubjectKeyId:          ski,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("new CA: sign: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("new CA: parse: %w", err)
	}
	return &CA{Cert: cert, Key: key}, nil
}

// IssueServer issues the xDS server's certificate for names, valid from now for lifetime
// (capped at the CA's own expiry).
func (ca *CA) IssueServer(names ServerNames, now time.Time, lifetime time.Duration) (*KeyPair, error) {
	if len(names.DNSNames) == 0 && len(names.IPs) == 0 {
		return nil, errors.New("issue server certificate: no DNS names or IPs")
	}
	cn := "berth-xds"
	if len(names.DNSNames) > 0 {
		cn = names.DNSNames[0]
	}
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: cn},
		DNSNames:    append([]string(nil), names.DNSNames...),
		IPAddresses: append([]net.IP(nil), names.IPs...),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	kp, err := ca.issue(tmpl, now, lifetime)
	if err != nil {
		return nil, fmt.Errorf("issue server certificate %q: %w", cn, err)
	}
	return kp, nil
}

// IssueClient issues the client certificate of a node group's Envoys, valid from now for
// lifetime (capped at the CA's own expiry). Its only URI SAN is GroupURI(group).
func (ca *CA) IssueClient(group string, now time.Time, lifetime time.Duration) (*KeyPair, error) {
	u, err := GroupURI(group)
	if err != nil {
		return nil, fmt.Errorf("issue client certificate: %w", err)
	}
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: group},
		URIs:        []*url.URL{u},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	kp, err := ca.issue(tmpl, now, lifetime)
	if err != nil {
		return nil, fmt.Errorf("issue client certificate for %q: %w", group, err)
	}
	return kp, nil
}

func (ca *CA) issue(tmpl *x509.Certificate, now time.Time, lifetime time.Duration) (*KeyPair, error) {
	if ca == nil || ca.Cert == nil || ca.Key == nil {
		return nil, errors.New("CA has no certificate or key")
	}
	if lifetime <= backdate {
		return nil, fmt.Errorf("lifetime %s is too short", lifetime)
	}
	if !now.Before(ca.Cert.NotAfter) {
		return nil, fmt.Errorf("CA %q expired at %s", ca.Cert.Subject.CommonName, ca.Cert.NotAfter.UTC().Format(time.RFC3339))
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	tmpl.SerialNumber = serial
	tmpl.NotBefore = now.Add(-backdate)
	tmpl.NotAfter = now.Add(lifetime)
	if tmpl.NotAfter.After(ca.Cert.NotAfter) {
		tmpl.NotAfter = ca.Cert.NotAfter
	}
	tmpl.BasicConstraintsValid = true
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parse: %w", err)
	}
	return &KeyPair{Cert: cert, Key: key}, nil
}

// TLSCertificate returns kp in the form crypto/tls serves, with the leaf parsed.
func (kp *KeyPair) TLSCertificate() tls.Certificate {
	return tls.Certificate{Certificate: [][]byte{kp.Cert.Raw}, PrivateKey: kp.Key, Leaf: kp.Cert}
}

// Pool returns a certificate pool that trusts the given CA certificates (several during a
// CA rotation: the old and the new).
func Pool(cas ...*x509.Certificate) *x509.CertPool {
	p := x509.NewCertPool()
	for _, c := range cas {
		p.AddCert(c)
	}
	return p
}

func newSerial() (*big.Int, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("serial number: %w", err)
	}
	return serial.Add(serial, big.NewInt(1)), nil
}

func subjectKeyID(pub crypto.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("subject key id: %w", err)
	}
	sum := sha256.Sum256(der)
	return sum[:20], nil
}

// keysMatch reports whether key is the private half of cert's public key.
func keysMatch(cert *x509.Certificate, key *ecdsa.PrivateKey) bool {
	pub, ok := cert.PublicKey.(*ecdsa.PublicKey)
	return ok && key != nil && pub.Equal(&key.PublicKey)
}
