package controllers_test

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"slices"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/berthnet/berth/api/v1alpha1"
	"github.com/berthnet/berth/xds/pki"
)

// The controller, as its ServiceAccount with the chart's roles, provisions
// a fleet for a Gateway in a tenant's namespace (into its own), and may not
// write a Secret, a Deployment or a Service into the tenant's namespace.
func TestGatewayControllerWritesOnlyItsNamespace(t *testing.T) {
	e := newGWEnv(t)
	e.create(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "tenant-a"}})
	e.create(berthClass())
	e.create(httpGateway("tenant-a", "edge"))
	// Fleet names by hand: sha256sum of "tenant-a/edge" begins 8e20b134.
	const base = "berth-gw-tenant-a-edge-8e20b134"
	for _, o := range []client.Object{&appsv1.Deployment{}, &corev1.Secret{}, &corev1.Service{}} {
		name := base
		if _, ok := o.(*corev1.Secret); ok {
			name = base + "-xds"
		}
		e.eventually(fmt.Sprintf("%T %s provisioned", o, name), func() error {
			return e.c.Get(e.ctx, client.ObjectKey{Namespace: "berth-system", Name: name}, o)
		})
	}

	tenantSecret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "tenant-a", Name: "app-tls"}, StringData: map[string]string{"k": "v"}}
	e.create(tenantSecret.DeepCopy())
	for what, write := range map[string]func() error{
		"create a Secret": func() error {
			return e.ctl.Create(e.ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "tenant-a", Name: "planted"}})
		},
		"create a Deployment": func() error {
			return e.ctl.Create(e.ctx, oldFleetDeployment("tenant-a", "planted", "gateway/tenant-a/edge"))
		},
		"create a Service": func() error {
			return e.ctl.Create(e.ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "tenant-a", Name: "planted"},
				Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80}}}})
		},
		"update a Secret": func() error {
			var s corev1.Secret
			if err := e.ctl.Get(e.ctx, client.ObjectKeyFromObject(tenantSecret), &s); err != nil {
				return fmt.Errorf("read (allowed): %w", err)
			}
			s.Data = map[string][]byte{"k": []byte("changed")}
			return e.ctl.Update(e.ctx, &s)
		},
	} {
		if err := write(); !apierrors.IsForbidden(err) {
			t.Errorf("the controller may %s in a tenant's namespace: %v, want Forbidden", what, err)
		}
	}
	// The same identity writes in its own namespace: the refusals above
	// are the namespace's, not a broken client's.
	if err := e.ctl.Create(e.ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "berth-system", Name: "rights-probe"}}); err != nil {
		t.Errorf("create a Secret in its own namespace: %v", err)
	}
}

// A reissued xDS client certificate rolls the fleet: the pod template
// carries the serial of the certificate in the Secret, so the Envoys, which
// read the files once, restart with the new one.
func TestGatewayCertificateReissueRollsFleet(t *testing.T) {
	e := newGWEnv(t)
	e.create(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "roll"}})
	e.create(berthClass())
	e.create(httpGateway("roll", "edge"))
	// sha256sum of "roll/edge" begins 14c1dac4.
	const base = "berth-gw-roll-edge-14c1dac4"
	key := client.ObjectKey{Namespace: "berth-system", Name: base}
	secKey := client.ObjectKey{Namespace: "berth-system", Name: base + "-xds"}

	templateSerialIs := func(want string) error {
		var d appsv1.Deployment
		if err := e.c.Get(e.ctx, key, &d); err != nil {
			return err
		}
		if got := d.Spec.Template.Annotations["berth.dev/xds-client-cert-serial"]; got != want {
			return fmt.Errorf("pod template serial %q, want %q", got, want)
		}
		return nil
	}
	var first string
	e.eventually("fleet Secret with a certificate", func() error {
		var err error
		first, err = secretSerial(e, secKey)
		return err
	})
	e.eventually("pod template names the Secret's certificate", func() error { return templateSerialIs(first) })

	// The certificate falls due: here it is one of another CA (as after a
	// CA rotation), which the controller must replace.
	other, err := pki.NewCA("other-ca", time.Now(), 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	kp, err := other.IssueClient(pki.GatewayGroup("roll", "edge"), time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, err := kp.KeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	sec := corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: secKey.Namespace, Name: secKey.Name}}
	updateObject(t, e.ctx, e.c, &sec, func() {
		sec.Data[corev1.TLSCertKey], sec.Data[corev1.TLSPrivateKeyKey] = kp.CertPEM(), keyPEM
	})
	planted := kp.Cert.SerialNumber.Text(16)
	var reissued string
	e.eventually("a new certificate of Berth's CA", func() error {
		s, err := secretSerial(e, secKey)
		if err != nil {
			return err
		}
		if s == first || s == planted {
			return fmt.Errorf("serial %s not reissued yet", s)
		}
		reissued = s
		return nil
	})
	e.eventually("pod template follows the reissued certificate", func() error { return templateSerialIs(reissued) })
}

// secretSerial reads the serial of the client certificate in a fleet
// Secret, parsed here with crypto/x509, not by the code under test.
func secretSerial(e *gwEnv, key client.ObjectKey) (string, error) {
	var sec corev1.Secret
	if err := e.c.Get(e.ctx, key, &sec); err != nil {
		return "", err
	}
	b, _ := pem.Decode(sec.Data[corev1.TLSCertKey])
	if b == nil {
		return "", fmt.Errorf("no PEM certificate in %s", key)
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		return "", err
	}
	return c.SerialNumber.Text(16), nil
}

// The fleet Service's address request counts in the Gateway's namespace:
// a pool for namespace "vip" serves the Gateway in "vip" although its
// Service lives in berth-system, and the same label on a tenant's own
// Service does not reach the pool.
func TestGatewayFleetAddressFromGatewayNamespacePool(t *testing.T) {
	vipOnly := ippool("vip-only", "198.51.100.64/29")
	vipOnly.Spec.ServiceAllocation = &v1alpha1.ServiceAllocation{Priority: ptr.To(int32(1)), Namespaces: []string{"vip"}}
	e := newGWEnvWith(t, nil, vipOnly)
	for _, ns := range []string{"vip", "spoof"} {
		e.create(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})
	}
	e.create(berthClass())
	e.create(httpGateway("vip", "edge"))
	e.eventually("Gateway address from the vip pool", func() error {
		var gw gwv1.Gateway
		if err := e.c.Get(e.ctx, client.ObjectKey{Namespace: "vip", Name: "edge"}, &gw); err != nil {
			return err
		}
		if a := gw.Status.Addresses; len(a) != 1 || a[0].Value != "198.51.100.64" {
			return fmt.Errorf("addresses %+v, want 198.51.100.64", a)
		}
		return nil
	})
	spoof := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "spoof", Name: "lb", Labels: map[string]string{"berth.dev/gateway-namespace": "vip"}},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, Selector: map[string]string{"app": "lb"},
			Ports: []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromInt32(8080), Protocol: corev1.ProtocolTCP}}},
	}
	e.create(spoof)
	e.eventually("the tenant's Service gets the general pool's address", func() error {
		if err := e.c.Get(e.ctx, client.ObjectKeyFromObject(spoof), spoof); err != nil {
			return err
		}
		if in := spoof.Status.LoadBalancer.Ingress; len(in) != 1 || in[0].IP != "198.51.100.32" {
			return fmt.Errorf("ingress %+v, want 198.51.100.32 from gw-pool", in)
		}
		return nil
	})
}

// Why a Gateway's Service has no address reaches the Gateway's owners, in
// its namespace: IPAM's own events are on the Service in berth-system.
func TestGatewayAddressProblemIsAnEventOnTheGateway(t *testing.T) {
	e := newGWEnv(t)
	e.create(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "nowhere"}})
	e.create(berthClass())
	gw := httpGateway("nowhere", "edge")
	gw.Spec.Addresses = []gwv1.GatewaySpecAddress{{Type: ptr.To(gwv1.IPAddressType), Value: "198.51.100.99"}} // outside gw-pool
	e.create(gw)
	e.eventually("a RequestedIPNotInPool event on the Gateway", func() error {
		var evs eventsv1.EventList
		if err := e.c.List(e.ctx, &evs, client.InNamespace("nowhere")); err != nil {
			return err
		}
		for _, ev := range evs.Items {
			if ev.Regarding.Kind == "Gateway" && ev.Regarding.Name == "edge" && ev.Reason == "RequestedIPNotInPool" && ev.Type == corev1.EventTypeWarning {
				return nil
			}
		}
		return fmt.Errorf("%d events in nowhere, none about the address", len(evs.Items))
	})
}

// legacyFleet is a cluster as the previous release left it: Gateway
// legacy/edge and its fleet in its namespace, the Service holding
// 198.51.100.40; and the new controller started on it.
type legacyFleet struct {
	e      *gwEnv
	old    []client.Object // the old fleet, its Service last
	newKey client.ObjectKey
}

func newLegacyFleet(t *testing.T) *legacyFleet {
	const oldName, group = "berth-gw-edge", "gateway/legacy/edge"
	oldSvc := &corev1.Service{ObjectMeta: oldFleetMeta("legacy", oldName, group), Spec: corev1.ServiceSpec{
		Type: corev1.ServiceTypeLoadBalancer, LoadBalancerClass: ptr.To("berth.dev/lb"), Selector: map[string]string{"app": "old-envoy"},
		Ports: []corev1.ServicePort{{Name: "l-80", Port: 80, TargetPort: intstr.FromInt32(10080), Protocol: corev1.ProtocolTCP}},
	}}
	oldSvc.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "198.51.100.40"}}
	old := []client.Object{
		oldFleetDeployment("legacy", oldName, group),
		&corev1.ConfigMap{ObjectMeta: oldFleetMeta("legacy", oldName+"-bootstrap", group)},
		&corev1.Secret{ObjectMeta: oldFleetMeta("legacy", oldName+"-xds", group)},
		&corev1.ServiceAccount{ObjectMeta: oldFleetMeta("legacy", oldName, group)},
		oldSvc,
	}
	before := []client.Object{&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "legacy"}}, berthClass(), httpGateway("legacy", "edge")}
	for _, o := range old {
		before = append(before, o.DeepCopyObject().(client.Object))
	}
	// sha256sum of "legacy/edge" begins cdaa7a43.
	return &legacyFleet{e: newGWEnvWith(t, nil, before...), old: old,
		newKey: client.ObjectKey{Namespace: "berth-system", Name: "berth-gw-legacy-edge-cdaa7a43"}}
}

// holds checks that a Service holds exactly the address want.
func (l *legacyFleet) holds(key client.ObjectKey, want string) error {
	var s corev1.Service
	if err := l.e.c.Get(l.e.ctx, key, &s); err != nil {
		return err
	}
	var got []string
	for _, in := range s.Status.LoadBalancer.Ingress {
		got = append(got, in.IP)
	}
	if !slices.Equal(got, []string{want}) {
		return fmt.Errorf("%s holds %v, want %s", key, got, want)
	}
	return nil
}

// asks waits until the new fleet Service asks for want ("": for nothing).
func (l *legacyFleet) asks(want string) {
	l.e.t.Helper()
	l.e.eventually(fmt.Sprintf("new fleet Service asks for %q", want), func() error {
		var s corev1.Service
		if err := l.e.c.Get(l.e.ctx, l.newKey, &s); err != nil {
			return err
		}
		if a := s.Annotations["berth.dev/load-balancer-ips"]; a != want {
			return fmt.Errorf("asks for %q", a)
		}
		return nil
	})
}

// newFleetReady writes the new fleet's Deployment status as the Deployment
// controller would once its first Envoy is ready (no kubelet here).
func (l *legacyFleet) newFleetReady() {
	l.e.t.Helper()
	var dep appsv1.Deployment
	if err := l.e.c.Get(l.e.ctx, l.newKey, &dep); err != nil {
		l.e.t.Fatal(err)
	}
	dep.Status = appsv1.DeploymentStatus{ObservedGeneration: dep.Generation, Replicas: 1, UpdatedReplicas: 1, ReadyReplicas: 1, AvailableReplicas: 1}
	if err := l.e.c.Status().Update(l.e.ctx, &dep); err != nil {
		l.e.t.Fatal(err)
	}
}

func (l *legacyFleet) oldRemoved() {
	l.e.t.Helper()
	for _, o := range l.old {
		l.e.eventually(fmt.Sprintf("old %T %s removed", o, o.GetName()), func() error {
			err := l.e.c.Get(l.e.ctx, client.ObjectKeyFromObject(o), o)
			if err == nil {
				return fmt.Errorf("still there")
			}
			return client.IgnoreNotFound(err)
		})
	}
}

// An upgrade from fleets in Gateways' namespaces: the new fleet asks for
// the old Service's address, the Gateway keeps showing it, the old fleet
// stays until the new one has a ready Envoy, then goes, and the new
// Service takes the address over.
func TestGatewayFleetMigratesFromGatewayNamespace(t *testing.T) {
	l := newLegacyFleet(t)
	e := l.e
	oldSvc := l.old[len(l.old)-1]
	e.eventually("old Service holds its address", func() error { return l.holds(client.ObjectKeyFromObject(oldSvc), "198.51.100.40") })
	l.asks("198.51.100.40")
	e.eventually("Gateway shows the old fleet's address meanwhile", func() error {
		var gw gwv1.Gateway
		if err := e.c.Get(e.ctx, client.ObjectKey{Namespace: "legacy", Name: "edge"}, &gw); err != nil {
			return err
		}
		if a := gw.Status.Addresses; len(a) != 1 || a[0].Value != "198.51.100.40" {
			return fmt.Errorf("addresses %+v", a)
		}
		return nil
	})
	// No Envoy of the new fleet is ready: the old fleet keeps serving.
	for _, o := range l.old {
		if err := e.c.Get(e.ctx, client.ObjectKeyFromObject(o), o); err != nil {
			t.Errorf("old fleet's %T %s removed before the new fleet was ready: %v", o, o.GetName(), err)
		}
	}
	l.newFleetReady()
	l.oldRemoved()
	e.eventually("new Service holds the old address", func() error { return l.holds(l.newKey, "198.51.100.40") })
	l.asks("")
	if err := l.holds(l.newKey, "198.51.100.40"); err != nil {
		t.Errorf("after the request is dropped: %v", err)
	}
}

// When the old address cannot be had (the pool no longer holds it), the
// new Service stops asking for it once the old fleet is gone, and gets an
// address of the pool rather than none.
func TestGatewayFleetMigrationOldAddressGone(t *testing.T) {
	l := newLegacyFleet(t)
	e := l.e
	l.asks("198.51.100.40")
	// gw-pool shrinks to 198.51.100.32-39: the old Service keeps .40 (with
	// a warning), which no Service may ask for any more.
	pool := &v1alpha1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: "gw-pool"}}
	updateObject(t, e.ctx, e.c, pool, func() { pool.Spec.Addresses = []v1alpha1.Address{"198.51.100.32/29"} })
	l.newFleetReady()
	l.oldRemoved()
	l.asks("")
	e.eventually("new Service holds the pool's first address", func() error { return l.holds(l.newKey, "198.51.100.32") })
}

func oldFleetMeta(ns, name, group string) metav1.ObjectMeta {
	return metav1.ObjectMeta{
		Namespace: ns, Name: name,
		Labels: map[string]string{
			"app.kubernetes.io/managed-by": "berth-controller", "app.kubernetes.io/component": "envoy",
		},
		Annotations: map[string]string{"berth.dev/xds-group": group},
	}
}

func oldFleetDeployment(ns, name, group string) *appsv1.Deployment {
	sel := map[string]string{"app": "old-envoy"}
	return &appsv1.Deployment{
		ObjectMeta: oldFleetMeta(ns, name, group),
		Spec: appsv1.DeploymentSpec{
			Selector: &metav1.LabelSelector{MatchLabels: sel},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: sel},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "envoy", Image: "envoy"}}},
			},
		},
	}
}
