package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/berthnet/berth/lab"
	"github.com/berthnet/berth/test/labtest"
	"github.com/berthnet/berth/xds/provision"
)

// A Gateway in the lab, with the release's RBAC: it gets an address from
// the LAN pool and its fleet in Berth's namespace; with no Envoy able to
// run here its Programmed condition says so, even after berthctl read its
// configuration; deleting it takes the whole fleet and the address with
// it. An Ingress of Berth's class gets the address of its class's fleet in
// its status.
func TestGatewayInTheLab(t *testing.T) {
	t.Parallel()
	l, ctx := labtest.Start(t, 5*time.Minute)
	cfg := l.Config(t)
	c, err := lab.GatewayClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	const ns, class = "gwlab", "berth-gwlab"
	same := gwv1.NamespacesFromSame
	for _, o := range []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}},
		&gwv1.GatewayClass{ObjectMeta: metav1.ObjectMeta{Name: class}, Spec: gwv1.GatewayClassSpec{ControllerName: "berth.dev/gateway"}},
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web"},
			Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "web"}, Ports: []corev1.ServicePort{{Name: "http", Port: 8080}}}},
		&gwv1.Gateway{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "edge"},
			Spec: gwv1.GatewaySpec{GatewayClassName: class, Listeners: []gwv1.Listener{{
				Name: "http", Port: 80, Protocol: gwv1.HTTPProtocolType,
				AllowedRoutes: &gwv1.AllowedRoutes{Namespaces: &gwv1.RouteNamespaces{From: &same}},
			}}}},
		&gwv1.HTTPRoute{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web"},
			Spec: gwv1.HTTPRouteSpec{
				CommonRouteSpec: gwv1.CommonRouteSpec{ParentRefs: []gwv1.ParentReference{{Name: "edge"}}},
				Hostnames:       []gwv1.Hostname{"web.gwlab.example"},
				Rules: []gwv1.HTTPRouteRule{{BackendRefs: []gwv1.HTTPBackendRef{{BackendRef: gwv1.BackendRef{
					BackendObjectReference: gwv1.BackendObjectReference{Name: "web", Port: ptr.To(gwv1.PortNumber(8080))}}}}}},
			}},
	} {
		if err := c.Create(ctx, o); err != nil {
			t.Fatalf("create %T %s: %v", o, o.GetName(), err)
		}
	}
	addr, prog, err := lab.WaitGatewayAddress(ctx, c, ns, "edge", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	first, last := cfg.LBPool()
	if a, err := netip.ParseAddr(addr); err != nil || a.Less(first) || last.Less(a) {
		t.Errorf("Gateway address %s, want one from the LAN pool %s-%s", addr, first, last)
	}
	if prog.Status != metav1.ConditionUnknown || prog.Reason != "Pending" {
		t.Errorf("Programmed %s/%s (%s) with no Envoy anywhere, want Unknown/Pending", prog.Status, prog.Reason, prog.Message)
	}

	// berthctl prints what the Envoys are served, as an observer.
	out, err := l.Berthctl(ctx, "gateway", "config", "--lab", l.Name, ns+"/edge")
	if err != nil || !strings.Contains(out, "web.gwlab.example") || !strings.Contains(out, "gwlab/web/8080") {
		t.Fatalf("berthctl gateway config: %v\n%s", err, out)
	}
	var gw gwv1.Gateway
	if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "edge"}, &gw); err != nil {
		t.Fatal(err)
	}
	for _, cond := range gw.Status.Conditions {
		if cond.Type == "Programmed" && cond.Status == metav1.ConditionTrue {
			t.Errorf("reading the configuration made the Gateway Programmed: %+v", cond)
		}
	}

	// The fleet lives in Berth's namespace, none of it in the Gateway's
	// (whose tenants could otherwise mount its client certificate).
	base := provision.GatewayFleetName(ns, "edge")
	fleet := []client.Object{
		&appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: lab.Namespace, Name: base}},
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: lab.Namespace, Name: base}},
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: lab.Namespace, Name: base}},
		&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: lab.Namespace, Name: provision.ConfigMapName(base)}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: lab.Namespace, Name: provision.SecretName(base)}},
	}
	for _, o := range fleet {
		if err := c.Get(ctx, client.ObjectKeyFromObject(o), o); err != nil {
			t.Errorf("fleet %T %s in %s: %v", o, o.GetName(), lab.Namespace, err)
		}
	}
	var deps appsv1.DeploymentList
	if err := c.List(ctx, &deps, client.InNamespace(ns)); err != nil || len(deps.Items) != 0 {
		t.Errorf("Deployments in the Gateway's namespace: %d (%v), want none", len(deps.Items), err)
	}

	// Deleting the Gateway: the controller removes its fleet by its labels
	// (no owner reference crosses namespaces).
	if err := c.Delete(ctx, &gw); err != nil {
		t.Fatal(err)
	}
	waitFor(ctx, t, "the Gateway's fleet to be removed", func() error {
		for _, o := range fleet {
			err := c.Get(ctx, client.ObjectKeyFromObject(o), o)
			if err == nil {
				return fmt.Errorf("%T %s still there", o, o.GetName())
			}
			if !apierrors.IsNotFound(err) {
				return err
			}
		}
		return nil
	})

	// An Ingress of a Berth IngressClass.
	prefix := networkingv1.PathTypePrefix
	for _, o := range []client.Object{
		&networkingv1.IngressClass{ObjectMeta: metav1.ObjectMeta{Name: class}, Spec: networkingv1.IngressClassSpec{Controller: "berth.dev/ingress"}},
		&networkingv1.Ingress{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web"},
			Spec: networkingv1.IngressSpec{IngressClassName: ptr.To(class), Rules: []networkingv1.IngressRule{{
				Host: "web.gwlab.example",
				IngressRuleValue: networkingv1.IngressRuleValue{HTTP: &networkingv1.HTTPIngressRuleValue{Paths: []networkingv1.HTTPIngressPath{{
					Path: "/", PathType: &prefix,
					Backend: networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{Name: "web", Port: networkingv1.ServiceBackendPort{Number: 8080}}},
				}}}},
			}}}},
	} {
		if err := c.Create(ctx, o); err != nil {
			t.Fatalf("create %T %s: %v", o, o.GetName(), err)
		}
	}
	waitFor(ctx, t, "the Ingress's status address", func() error {
		var in networkingv1.Ingress
		if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "web"}, &in); err != nil {
			return err
		}
		if len(in.Status.LoadBalancer.Ingress) == 0 {
			return fmt.Errorf("no address in %+v", in.Status.LoadBalancer)
		}
		return nil
	})
}

// waitFor polls f every 200 ms until it returns nil or ctx ends.
func waitFor(ctx context.Context, t *testing.T, what string, f func() error) {
	t.Helper()
	for {
		err := f()
		if err == nil {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("waiting for %s: %v", what, err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}
