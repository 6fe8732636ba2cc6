package controllers

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
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
