package controllers

import (
	"bytes"
	"context"
	"crypto/x509"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/berthnet/berth/xds/pki"
	"github.com/berthnet/berth/xds/server"
)

// Lifetimes of the xDS certificates. Leaves are renewed with a third of
// their lifetime left, so a controller that was down for weeks still finds
// valid ones.
const (
	caLifetime   = 10 * 365 * 24 * time.Hour
	leafLifetime = 90 * 24 * time.Hour
	// caBundleKey holds every CA certificate Envoys and the server trust:
	// the current one and, during a rotation, the previous one.
	caBundleKey = "ca.crt"
	// The label on the CA Secret, as on everything the controller makes.
	managedByLabel = "app.kubernetes.io/managed-by"
	managedBy      = "berth-controller"
)

// The CA's Secret: of Berth's own type, so that it is no kubernetes.io/tls
// Secret a Gateway or an Ingress could name as its certificate (nor in the
// controller's cache of TLS Secrets, which translation reads).
const (
	caSecretType corev1.SecretType = "berth.dev/xds-ca"
	// legacyCASecret is where releases before held the CA, as a
	// kubernetes.io/tls Secret. A Secret's type cannot change, so the CA
	// moves: ensureCA copies it (the same key and bundle, so fleets keep
	// connecting) into the new Secret, then deletes this one.
	legacyCASecret = "berth-xds-ca"
)

// xdsPKI keeps the CA behind the xDS server's mutual TLS in a Secret of the
// controller's namespace (type caSecretType: tls.crt and tls.key are the
// CA's, ca.crt the trust bundle) and issues the server's certificate and
// each fleet's client certificate from it.
type xdsPKI struct {
	client client.Client
	// reader reads the CA Secret from the API server, not from a cache
	// that may not hold it yet: a stale miss would try to create a Secret
	// that exists.
	reader    client.Reader
	namespace string
	name      string
	names     pki.ServerNames
	now       func() time.Time

	mu     sync.Mutex
	ca     *pki.CA
	bundle []*x509.Certificate
}

// ensureCA loads the CA from its Secret, creating the Secret on first start
// (from the legacy one when an older release left it) and rotating the CA
// when it falls due (the old CA stays trusted in the bundle until it
// expires, so fleets with older client certificates keep connecting while
// they are reissued).
func (p *xdsPKI) ensureCA(ctx context.Context) (*pki.CA, []*x509.Certificate, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now()
	key := types.NamespacedName{Namespace: p.namespace, Name: p.name}
	sec, err := p.readOrCreate(ctx, key, now)
	if err != nil {
		return nil, nil, err
	}
	if sec.Type != caSecretType {
		return nil, nil, fmt.Errorf("xDS CA Secret %s is of type %q, want %s (delete it to have a new CA made; every fleet is then reissued)", key, sec.Type, caSecretType)
	}
	// Only once the new Secret holds the CA does the old one go: a
	// controller stopped in between finds both and finishes here.
	if err := p.dropLegacy(ctx); err != nil {
		return nil, nil, err
	}
	ca, err := pki.LoadCA(sec.Data[corev1.TLSCertKey], sec.Data[corev1.TLSPrivateKeyKey])
	if err != nil {
		return nil, nil, fmt.Errorf("xDS CA Secret %s: %w (delete it to have a new CA made; every fleet is then reissued)", key, err)
	}
	bundle, err := pki.DecodeCertsPEM(sec.Data[caBundleKey])
	if err != nil || len(bundle) == 0 {
		bundle = []*x509.Certificate{ca.Cert}
	}
	bundle = unexpired(bundle, now)
	if d := pki.CheckCA(ca.Cert, now); d.Renew {
		next, err := pki.NewCA("berth-xds-ca", now, caLifetime)
		if err != nil {
			return nil, nil, err
		}
		bundle = append([]*x509.Certificate{next.Cert}, bundle...)
		ns, err := caSecret(key, next, bundle)
		if err != nil {
			return nil, nil, err
		}
		sec.Data = ns.Data
		if err := p.client.Update(ctx, sec); err != nil {
			return nil, nil, fmt.Errorf("rotate xDS CA in %s (%s): %w", key, d.Reason, err)
		}
		ca = next
	}
	p.ca, p.bundle = ca, bundle
	return ca, bundle, nil
}

// readOrCreate reads the CA Secret, or creates it: with the legacy
// Secret's data when there is one, else with a new CA. When another
// instance creates it first, that one is read.
func (p *xdsPKI) readOrCreate(ctx context.Context, key types.NamespacedName, now time.Time) (*corev1.Secret, error) {
	var sec corev1.Secret
	err := p.reader.Get(ctx, key, &sec)
	if err == nil {
		return &sec, nil
	}
	if !apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("read xDS CA Secret %s: %w", key, err)
	}
	created, err := p.fromLegacy(ctx, key)
	if err != nil {
		return nil, err
	}
	if created == nil {
		ca, err := pki.NewCA("berth-xds-ca", now, caLifetime)
		if err != nil {
			return nil, err
		}
		if created, err = caSecret(key, ca, []*x509.Certificate{ca.Cert}); err != nil {
			return nil, err
		}
	}
	err = p.client.Create(ctx, created)
	if err == nil {
		return created, nil
	}
	if !apierrors.IsAlreadyExists(err) {
		return nil, fmt.Errorf("create xDS CA Secret %s: %w", key, err)
	}
	// Another instance made it first: that CA is the one.
	if err := p.reader.Get(ctx, key, &sec); err != nil {
		return nil, fmt.Errorf("read xDS CA Secret %s: %w", key, err)
	}
	return &sec, nil
}

// legacy reads the CA Secret an older release made, nil when there is none
// (or the Secret of that name is not one berth-controller made).
func (p *xdsPKI) legacy(ctx context.Context) (*corev1.Secret, error) {
	if p.name == legacyCASecret {
		return nil, nil
	}
	var old corev1.Secret
	err := p.reader.Get(ctx, types.NamespacedName{Namespace: p.namespace, Name: legacyCASecret}, &old)
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read the xDS CA Secret of an older release %s/%s: %w", p.namespace, legacyCASecret, err)
	}
	if old.Type != corev1.SecretTypeTLS || old.Labels[managedByLabel] != managedBy {
		return nil, nil
	}
	return &old, nil
}

// fromLegacy is the new CA Secret holding the legacy one's data, nil when
// there is no legacy Secret.
func (p *xdsPKI) fromLegacy(ctx context.Context, key types.NamespacedName) (*corev1.Secret, error) {
	old, err := p.legacy(ctx)
	if err != nil || old == nil {
		return nil, err
	}
	if _, err := pki.LoadCA(old.Data[corev1.TLSCertKey], old.Data[corev1.TLSPrivateKeyKey]); err != nil {
		// Nothing worth keeping: a new CA is made, and the old Secret goes.
		return nil, nil
	}
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name, Labels: map[string]string{managedByLabel: managedBy}},
		Type:       caSecretType,
		Data:       old.Data,
	}, nil
}

// dropLegacy deletes the legacy CA Secret, if it is still there.
func (p *xdsPKI) dropLegacy(ctx context.Context) error {
	old, err := p.legacy(ctx)
	if err != nil || old == nil {
		return err
	}
	err = p.client.Delete(ctx, old, client.Preconditions{UID: &old.UID})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete the xDS CA Secret of an older release %s/%s (its CA moved to %s): %w", p.namespace, legacyCASecret, p.name, err)
	}
	return nil
}

func unexpired(certs []*x509.Certificate, now time.Time) []*x509.Certificate {
	var out []*x509.Certificate
	for _, c := range certs {
		if now.Before(c.NotAfter) {
			out = append(out, c)
		}
	}
	return out
}

func caSecret(key types.NamespacedName, ca *pki.CA, bundle []*x509.Certificate) (*corev1.Secret, error) {
	keyPEM, err := ca.KeyPEM()
	if err != nil {
		return nil, err
	}
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name, Labels: map[string]string{managedByLabel: managedBy}},
		Type:       caSecretType,
		Data: map[string][]byte{
			corev1.TLSCertKey:       ca.CertPEM(),
			corev1.TLSPrivateKeyKey: keyPEM,
			caBundleKey:             pki.EncodeCertsPEM(bundle...),
		},
	}, nil
}

// serverCredentials issues the xDS server's certificate from the current CA.
func (p *xdsPKI) serverCredentials(ctx context.Context) (server.Credentials, *x509.Certificate, error) {
	ca, bundle, err := p.ensureCA(ctx)
	if err != nil {
		return server.Credentials{}, nil, err
	}
	kp, err := ca.IssueServer(p.names, p.now(), leafLifetime)
	if err != nil {
		return server.Credentials{}, nil, err
	}
	return server.Credentials{Certificate: kp.TLSCertificate(), ClientCAs: pki.Pool(bundle...)}, kp.Cert, nil
}

// clientSecretData returns the data of a fleet's xDS Secret: the existing
// data when it is still good for group (same CA trust, not due), else a
// newly issued client certificate. changed says which.
func (p *xdsPKI) clientSecretData(group string, existing map[string][]byte) (map[string][]byte, bool, error) {
	p.mu.Lock()
	ca, bundle := p.ca, p.bundle
	p.mu.Unlock()
	if ca == nil {
		return nil, false, fmt.Errorf("xDS CA not loaded yet")
	}
	bundlePEM := pki.EncodeCertsPEM(bundle...)
	if cert, err := pki.DecodeCertPEM(existing[corev1.TLSCertKey]); err == nil && bytes.Equal(existing[caBundleKey], bundlePEM) {
		if d := pki.CheckClient(cert, ca.Cert, group, p.now()); !d.Renew {
			return existing, false, nil
		}
	}
	kp, err := ca.IssueClient(group, p.now(), leafLifetime)
	if err != nil {
		return nil, false, err
	}
	keyPEM, err := kp.KeyPEM()
	if err != nil {
		return nil, false, err
	}
	return map[string][]byte{corev1.TLSCertKey: kp.CertPEM(), corev1.TLSPrivateKeyKey: keyPEM, caBundleKey: bundlePEM}, true, nil
}
