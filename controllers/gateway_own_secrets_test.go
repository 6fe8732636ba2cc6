package controllers_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
	gwv1b1 "sigs.k8s.io/gateway-api/apis/v1beta1"

	"github.com/berthnet/berth/xds/pki"
	"github.com/berthnet/berth/xds/provision"
)

// TestGatewayNeverServesBerthsSecrets: with a ReferenceGrant in Berth's
// namespace that lets a tenant's Gateways use every Secret there, the
// tenant's listeners naming the xDS CA or another fleet's xDS client
// certificate are refused (ResolvedRefs False) and their keys are never
// sent to the tenant's Envoys, while a certificate of the operator's under
// the same grant is served. Before, the fleet's certificate (and the CA,
// then a kubernetes.io/tls Secret) went out over SDS: whoever held them
// could pose as any fleet to the xDS server.
func TestGatewayNeverServesBerthsSecrets(t *testing.T) {
	e := newGWEnv(t)
	e.create(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "own-shop"}})
	e.create(berthClass())
	// Another tenant's Gateway: its fleet's client certificate is the prize.
	e.create(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "own-bank"}})
	e.create(httpGateway("own-bank", "vault"))
	fleetSecret := provision.SecretName(provision.GatewayFleetName("own-bank", "vault"))
	e.eventually("the bank fleet's Secret "+fleetSecret, func() error {
		return e.c.Get(e.ctx, client.ObjectKey{Namespace: "berth-system", Name: fleetSecret}, &corev1.Secret{})
	})
	// The operator's own certificate beside Berth's Secrets.
	ca, err := pki.NewCA("shop.example.com", time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, err := ca.KeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	e.create(&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "berth-system", Name: "own-operators-cert"}, Type: corev1.SecretTypeTLS,
		Data: map[string][]byte{"tls.crt": ca.CertPEM(), "tls.key": keyPEM}})
	e.create(&gwv1b1.ReferenceGrant{
		ObjectMeta: metav1.ObjectMeta{Namespace: "berth-system", Name: "own-every-secret"},
		Spec: gwv1b1.ReferenceGrantSpec{
			From: []gwv1b1.ReferenceGrantFrom{{Group: gwv1.GroupName, Kind: "Gateway", Namespace: "own-shop"}},
			To:   []gwv1b1.ReferenceGrantTo{{Group: "", Kind: "Secret"}},
		},
	})
	listener := func(name, host, secret string) gwv1.Listener {
		return gwv1.Listener{Name: gwv1.SectionName(name), Port: 443, Protocol: gwv1.HTTPSProtocolType, Hostname: ptr.To(gwv1.Hostname(host)),
			TLS: &gwv1.ListenerTLSConfig{CertificateRefs: []gwv1.SecretObjectReference{{Name: gwv1.ObjectName(secret), Namespace: ptr.To(gwv1.Namespace("berth-system"))}}}}
	}
	e.create(&gwv1.Gateway{
		ObjectMeta: metav1.ObjectMeta{Namespace: "own-shop", Name: "edge"},
		Spec: gwv1.GatewaySpec{GatewayClassName: "berth", Listeners: []gwv1.Listener{
			listener("ca", "ca.example.com", "berth-xds-issuer"),
			listener("fleet", "fleet.example.com", fleetSecret),
			listener("operators", "shop.example.com", "own-operators-cert"),
		}},
	})
	want := map[string]struct {
		status  metav1.ConditionStatus
		message string
	}{
		// The CA is no TLS Secret, so translation does not even see it.
		"ca":        {metav1.ConditionFalse, "no such Secret of type kubernetes.io/tls"},
		"fleet":     {metav1.ConditionFalse, "made by berth-controller"},
		"operators": {metav1.ConditionTrue, ""},
	}
	e.eventually("the listeners' ResolvedRefs", func() error {
		var gw gwv1.Gateway
		if err := e.c.Get(e.ctx, client.ObjectKey{Namespace: "own-shop", Name: "edge"}, &gw); err != nil {
			return err
		}
		if len(gw.Status.Listeners) != len(want) {
			return fmt.Errorf("%d listeners in status", len(gw.Status.Listeners))
		}
		for _, l := range gw.Status.Listeners {
			w := want[string(l.Name)]
			c := meta.FindStatusCondition(l.Conditions, string(gwv1.ListenerConditionResolvedRefs))
			if c == nil || c.Status != w.status || !strings.Contains(c.Message, w.message) {
				return fmt.Errorf("listener %s ResolvedRefs %+v, want %s with %q", l.Name, c, w.status, w.message)
			}
			if w.status == metav1.ConditionFalse && c.Reason != string(gwv1.ListenerReasonInvalidCertificateRef) {
				return fmt.Errorf("listener %s refused for %s, want %s", l.Name, c.Reason, gwv1.ListenerReasonInvalidCertificateRef)
			}
		}
		return nil
	})
	// What the shop's Envoys are sent: the operator's certificate alone.
	_, cfg := e.envoy("own-shop", "edge", "own-shop-envoy")
	var secrets []string
	for _, m := range cfg[resourcev3.SecretType] {
		secrets = append(secrets, m.(*tlsv3.Secret).Name)
	}
	slices.Sort(secrets)
	if !slices.Equal(secrets, []string{"berth-system/own-operators-cert"}) {
		t.Errorf("secrets sent to the shop's Envoys: %v, want only berth-system/own-operators-cert", secrets)
	}
}
