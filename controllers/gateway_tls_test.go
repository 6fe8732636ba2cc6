package controllers_test

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/berthnet/berth/xds/pki"
	"github.com/berthnet/berth/xds/provision"
)

// tlsSecret is a kubernetes.io/tls Secret with a fresh certificate for host.
func tlsSecret(t *testing.T, ns, name, host string) *corev1.Secret {
	t.Helper()
	ca, err := pki.NewCA("test-ca", time.Now(), 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	kp, err := ca.IssueServer(pki.ServerNames{DNSNames: []string{host}}, time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	key, err := kp.KeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Type:       corev1.SecretTypeTLS,
		Data:       map[string][]byte{corev1.TLSCertKey: kp.CertPEM(), corev1.TLSPrivateKeyKey: key},
	}
}

// A rotated certificate Secret reaches the Envoys by SDS, with no other
// change.
func TestGatewaySecretRotationReachesSDS(t *testing.T) {
	e := newGWEnv(t)
	e.create(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "secure"}})
	e.create(berthClass())
	svc, slice := webService("secure", "web", "10.3.0.1")
	e.create(svc)
	e.create(slice)
	sec := tlsSecret(t, "secure", "web-tls", "web.example.com")
	e.create(sec)
	gw := httpGateway("secure", "edge")
	gw.Spec.Listeners[0] = gwv1.Listener{
		Name: "https", Port: 443, Protocol: gwv1.HTTPSProtocolType, Hostname: ptr.To(gwv1.Hostname("web.example.com")),
		TLS: &gwv1.ListenerTLSConfig{Mode: ptr.To(gwv1.TLSModeTerminate), CertificateRefs: []gwv1.SecretObjectReference{{Name: "web-tls"}}},
	}
	e.create(gw)
	e.create(httpRoute("secure", "web", "secure", "edge", "web.example.com", "secure", "web"))
	e.gatewayCondition("secure", "edge", "Accepted", metav1.ConditionTrue, "Accepted")

	envoy, cfg := e.envoy("secure", "edge", "envoy-tls")
	if got := sdsChain(t, cfg[resourcev3.SecretType]); !bytes.Equal(got, sec.Data[corev1.TLSCertKey]) {
		t.Fatalf("SDS serves %q, want the Secret's certificate", got)
	}
	rotated := tlsSecret(t, "secure", "web-tls", "web.example.com")
	if err := e.c.Get(e.ctx, client.ObjectKeyFromObject(sec), sec); err != nil {
		t.Fatal(err)
	}
	sec.Data = rotated.Data
	if err := e.c.Update(e.ctx, sec); err != nil {
		t.Fatal(err)
	}
	r := next(t, envoy, resourcev3.SecretType)
	var s tlsv3.Secret
	if err := r.Resources[0].UnmarshalTo(&s); err != nil {
		t.Fatal(err)
	}
	if got := s.GetTlsCertificate().GetCertificateChain().GetInlineBytes(); !bytes.Equal(got, rotated.Data[corev1.TLSCertKey]) {
		t.Fatalf("after rotation SDS serves %q, want the new certificate", got)
	}
	if err := envoy.Ack(r); err != nil {
		t.Fatal(err)
	}
	e.gatewayCondition("secure", "edge", "Programmed", metav1.ConditionTrue, "Programmed")
}

func sdsChain(t *testing.T, msgs []proto.Message) []byte {
	t.Helper()
	if len(msgs) != 1 {
		t.Fatalf("%d secrets served, want 1", len(msgs))
	}
	return msgs[0].(*tlsv3.Secret).GetTlsCertificate().GetCertificateChain().GetInlineBytes()
}

// An Ingress of Berth's class is served by the class's Envoys in the
// controller's namespace; its status carries their address.
func TestIngressStatusFromItsFleet(t *testing.T) {
	e := newGWEnv(t)
	e.create(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "legacy"}})
	e.create(&networkingv1.IngressClass{ObjectMeta: metav1.ObjectMeta{Name: "berth"}, Spec: networkingv1.IngressClassSpec{Controller: "berth.dev/ingress"}})
	svc, slice := webService("legacy", "app", "10.4.0.1")
	e.create(svc)
	e.create(slice)
	prefix := networkingv1.PathTypePrefix
	e.create(&networkingv1.Ingress{
		ObjectMeta: metav1.ObjectMeta{Namespace: "legacy", Name: "app"},
		Spec: networkingv1.IngressSpec{IngressClassName: ptr.To("berth"), Rules: []networkingv1.IngressRule{{
			Host: "app.example.com",
			IngressRuleValue: networkingv1.IngressRuleValue{HTTP: &networkingv1.HTTPIngressRuleValue{Paths: []networkingv1.HTTPIngressPath{{
				Path: "/", PathType: &prefix,
				Backend: networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{Name: "app", Port: networkingv1.ServiceBackendPort{Number: 8080}}},
			}}}},
		}}},
	})
	fleet := provision.ObjectName("ingress", "berth")
	e.eventually("Ingress status from the class's fleet", func() error {
		var in networkingv1.Ingress
		if err := e.c.Get(e.ctx, client.ObjectKey{Namespace: "legacy", Name: "app"}, &in); err != nil {
			return err
		}
		var svc corev1.Service
		if err := e.c.Get(e.ctx, client.ObjectKey{Namespace: "berth-system", Name: fleet}, &svc); err != nil {
			return err
		}
		if len(svc.Status.LoadBalancer.Ingress) == 0 {
			return fmt.Errorf("fleet Service %s has no address yet", fleet)
		}
		if lb := in.Status.LoadBalancer.Ingress; len(lb) != 1 || lb[0].IP != svc.Status.LoadBalancer.Ingress[0].IP {
			return fmt.Errorf("Ingress status %+v, want %s", lb, svc.Status.LoadBalancer.Ingress[0].IP)
		}
		return nil
	})
}
