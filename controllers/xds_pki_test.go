package controllers

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/berthnet/berth/test/kubetest"
	"github.com/berthnet/berth/xds/pki"
)

// TestCAMadeOnce: controllers that find no CA Secret at the same moment
// (a new install's first leader and a stale cache, or two starts) end with
// one CA among them: those whose create lost read the one that won, rather
// than failing their sync.
func TestCAMadeOnce(t *testing.T) {
	env := kubetest.Start(t, kubetest.Options{})
	c, err := client.New(env.Config, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "berth-system"}}); err != nil {
		t.Fatal(err)
	}
	for round := range 5 {
		name := fmt.Sprintf("xds-ca-%d", round)
		const n = 4
		got := make([][]byte, n)
		errs := make([]error, n)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i := range n {
			p := &xdsPKI{client: c, reader: c, namespace: "berth-system", name: name, now: time.Now}
			wg.Go(func() {
				<-start
				ca, _, err := p.ensureCA(ctx)
				if err != nil {
					errs[i] = err
					return
				}
				got[i] = ca.Cert.Raw
			})
		}
		close(start)
		wg.Wait()
		var sec corev1.Secret
		if err := c.Get(context.Background(), client.ObjectKey{Namespace: "berth-system", Name: name}, &sec); err != nil {
			t.Fatal(err)
		}
		want, err := pki.DecodeCertsPEM(sec.Data[corev1.TLSCertKey])
		if err != nil || len(want) != 1 {
			t.Fatalf("round %d: the Secret's tls.crt: %v (%d certificates)", round, err, len(want))
		}
		for i := range n {
			if errs[i] != nil {
				t.Fatalf("round %d, instance %d: %v", round, i, errs[i])
			}
			if !bytes.Equal(want[0].Raw, got[i]) {
				t.Errorf("round %d: instance %d holds a CA that is not the Secret's", round, i)
			}
		}
	}
}

// TestCAMovedFromLegacySecret: an older release kept the CA in
// kubernetes.io/tls Secret berth-xds-ca, which a Gateway could name as its
// certificate. The controller moves it into a Secret of type
// berth.dev/xds-ca with the very same data (so fleets keep their trust and
// client certificates), then deletes the old one; stopped between the two
// steps, it finishes the move at the next start; a Secret of that old name
// that berth-controller did not make is left alone.
func TestCAMovedFromLegacySecret(t *testing.T) {
	env := kubetest.Start(t, kubetest.Options{})
	c, err := client.New(env.Config, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	oldCA := func(t *testing.T, ns string) *corev1.Secret {
		t.Helper()
		ca, err := pki.NewCA("berth-xds-ca", time.Now(), caLifetime)
		if err != nil {
			t.Fatal(err)
		}
		keyPEM, err := ca.KeyPEM()
		if err != nil {
			t.Fatal(err)
		}
		return &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "berth-xds-ca", Labels: map[string]string{"app.kubernetes.io/managed-by": "berth-controller"}},
			Type:       corev1.SecretTypeTLS,
			Data:       map[string][]byte{"tls.crt": ca.CertPEM(), "tls.key": keyPEM, "ca.crt": ca.CertPEM()},
		}
	}
	get := func(t *testing.T, ns, name string) (*corev1.Secret, error) {
		t.Helper()
		var s corev1.Secret
		err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &s)
		return &s, err
	}
	setup := func(t *testing.T, ns string, objs ...client.Object) *xdsPKI {
		t.Helper()
		if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
			t.Fatal(err)
		}
		for _, o := range objs {
			if err := c.Create(ctx, o); err != nil {
				t.Fatal(err)
			}
		}
		return &xdsPKI{client: c, reader: c, namespace: ns, name: "berth-xds-issuer", now: time.Now}
	}
	moved := func(t *testing.T, p *xdsPKI, old *corev1.Secret) {
		t.Helper()
		ca, _, err := p.ensureCA(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(ca.CertPEM(), old.Data["tls.crt"]) {
			t.Error("the CA in use is not the old Secret's")
		}
		now, err := get(t, p.namespace, "berth-xds-issuer")
		if err != nil {
			t.Fatal(err)
		}
		if now.Type != "berth.dev/xds-ca" {
			t.Errorf("the CA Secret's type is %q, want berth.dev/xds-ca", now.Type)
		}
		for _, k := range []string{"tls.crt", "tls.key", "ca.crt"} {
			if !bytes.Equal(now.Data[k], old.Data[k]) {
				t.Errorf("%s of the moved CA differs from the old Secret's", k)
			}
		}
		if _, err := get(t, p.namespace, "berth-xds-ca"); !apierrors.IsNotFound(err) {
			t.Errorf("the old CA Secret after the move: %v, want it deleted", err)
		}
	}

	t.Run("upgrade", func(t *testing.T) {
		old := oldCA(t, "move-upgrade")
		p := setup(t, "move-upgrade", old.DeepCopy())
		moved(t, p, old)
		// The next start finds the moved CA and changes nothing.
		before, _ := get(t, p.namespace, "berth-xds-issuer")
		moved(t, &xdsPKI{client: c, reader: c, namespace: p.namespace, name: p.name, now: time.Now}, old)
		after, _ := get(t, p.namespace, "berth-xds-issuer")
		if before.ResourceVersion != after.ResourceVersion {
			t.Error("a second start rewrote the CA Secret")
		}
	})
	t.Run("stopped after the copy", func(t *testing.T) {
		old := oldCA(t, "move-halfway")
		copied := old.DeepCopy()
		copied.Name, copied.Type = "berth-xds-issuer", "berth.dev/xds-ca"
		moved(t, setup(t, "move-halfway", old.DeepCopy(), copied), old)
	})
	t.Run("not ours", func(t *testing.T) {
		mine := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "move-not-ours", Name: "berth-xds-ca"}, Type: corev1.SecretTypeOpaque,
			Data: map[string][]byte{"token": []byte("an operator's")}}
		p := setup(t, "move-not-ours", mine)
		if _, _, err := p.ensureCA(ctx); err != nil {
			t.Fatal(err)
		}
		if s, err := get(t, p.namespace, "berth-xds-ca"); err != nil || string(s.Data["token"]) != "an operator's" {
			t.Errorf("the operator's Secret berth-xds-ca: %v, %q", err, s.Data)
		}
		if s, err := get(t, p.namespace, "berth-xds-issuer"); err != nil || s.Type != "berth.dev/xds-ca" {
			t.Errorf("a new CA: %v (type %q)", err, s.Type)
		}
	})
}
