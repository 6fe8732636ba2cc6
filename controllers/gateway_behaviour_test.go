package controllers_test

import (
	"fmt"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
	gwv1b1 "sigs.k8s.io/gateway-api/apis/v1beta1"
)

// A Gateway gets its fleet, its address, and is Programmed only once an
// Envoy of its own ACKed what it was sent; endpoint changes reach EDS; a
// NACK turns Programmed False with Envoy's words, and the next good
// version brings it back.
func TestGatewayLifecycle(t *testing.T) {
	e := newGWEnv(t)
	e.create(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}})
	e.create(berthClass())
	svc, slice := webService("shop", "web", "10.1.0.1", "10.1.0.2")
	e.create(svc)
	e.create(slice)
	e.create(httpGateway("shop", "edge"))
	e.create(httpRoute("shop", "web", "shop", "edge", "web.example.com", "shop", "web"))

	e.eventually("GatewayClass Accepted", func() error {
		var gc gwv1.GatewayClass
		if err := e.c.Get(e.ctx, client.ObjectKey{Name: "berth"}, &gc); err != nil {
			return err
		}
		return conditionIs(gc.Status.Conditions, "Accepted", metav1.ConditionTrue, "Accepted")
	})
	e.gatewayCondition("shop", "edge", "Accepted", metav1.ConditionTrue, "Accepted")
	// No Envoy yet: Programmed says so rather than claiming success.
	e.gatewayCondition("shop", "edge", "Programmed", metav1.ConditionUnknown, "Pending")
	e.routeCondition("shop", "web", "Accepted", metav1.ConditionTrue, "Accepted")
	e.routeCondition("shop", "web", "ResolvedRefs", metav1.ConditionTrue, "ResolvedRefs")
	// What the syncs took is in the metrics: every step, and the time from
	// the events to the served configuration.
	steps := e.histogramCounts("berth_controller_gateway_sync_step_seconds")
	for _, step := range []string{"gather", "translate", "serve", "provision", "status"} {
		if steps["step="+step] == 0 {
			t.Errorf("no sync step %q observed: %v", step, steps)
		}
	}
	if served := e.histogramCounts("berth_controller_gateway_event_to_serve_seconds"); served[""] == 0 {
		t.Errorf("no event-to-serve time observed: %v", served)
	}

	// The fleet: every object in Berth's namespace, labelled with the
	// Gateway (no owner reference can cross namespaces); the Service on
	// the listener port, to the port Envoy binds.
	const base = "berth-gw-shop-edge-3788f37a" // sha256sum of "shop/edge"
	var gw gwv1.Gateway
	if err := e.c.Get(e.ctx, client.ObjectKey{Namespace: "shop", Name: "edge"}, &gw); err != nil {
		t.Fatal(err)
	}
	for _, o := range []client.Object{&appsv1.Deployment{}, &corev1.Service{}, &corev1.ServiceAccount{}, &corev1.ConfigMap{}, &corev1.Secret{}} {
		name := base
		switch o.(type) {
		case *corev1.ConfigMap:
			name = base + "-bootstrap"
		case *corev1.Secret:
			name = base + "-xds"
		}
		e.eventually(fmt.Sprintf("%T %s", o, name), func() error {
			if err := e.c.Get(e.ctx, client.ObjectKey{Namespace: "berth-system", Name: name}, o); err != nil {
				return err
			}
			l := o.GetLabels()
			if l["berth.dev/gateway-namespace"] != "shop" || l["berth.dev/gateway-name"] != "edge" || len(o.GetOwnerReferences()) != 0 {
				return fmt.Errorf("labels %v owners %v, want the Gateway shop/edge in labels and no owner", l, o.GetOwnerReferences())
			}
			return nil
		})
	}
	// Nothing of the fleet in the Gateway's namespace, where its tenant
	// could mount the client certificate.
	var inShop corev1.SecretList
	if err := e.c.List(e.ctx, &inShop, client.InNamespace("shop")); err != nil {
		t.Fatal(err)
	}
	if len(inShop.Items) != 0 {
		t.Errorf("%d Secrets in the Gateway's namespace, want none", len(inShop.Items))
	}
	var fleetSvc corev1.Service
	if err := e.c.Get(e.ctx, client.ObjectKey{Namespace: "berth-system", Name: base}, &fleetSvc); err != nil {
		t.Fatal(err)
	}
	if p := fleetSvc.Spec.Ports; len(p) != 1 || p[0].Port != 80 || p[0].TargetPort.IntValue() != 10080 {
		t.Errorf("fleet Service ports %+v, want 80 -> 10080", p)
	}

	// An Envoy of the fleet connects and ACKs everything.
	envoy, _ := e.envoy("shop", "edge", "envoy-a")
	got := e.gatewayCondition("shop", "edge", "Programmed", metav1.ConditionTrue, "Programmed")
	if len(got.Status.Addresses) != 1 || got.Status.Addresses[0].Value != "198.51.100.32" {
		t.Errorf("Gateway addresses %+v, want the pool's first address", got.Status.Addresses)
	}

	// An endpoint change: EDS only, with the new address.
	slice.Endpoints = append(slice.Endpoints, discoveryv1.Endpoint{Addresses: []string{"10.1.0.3"}, Conditions: discoveryv1.EndpointConditions{Ready: ptrTrue()}})
	if err := e.c.Update(e.ctx, slice); err != nil {
		t.Fatal(err)
	}
	for {
		r := next(t, envoy, resourcev3.EndpointType)
		var cla endpointv3.ClusterLoadAssignment
		if err := r.Resources[0].UnmarshalTo(&cla); err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, l := range cla.Endpoints {
			n += len(l.LbEndpoints)
		}
		if err := envoy.Ack(r); err != nil {
			t.Fatal(err)
		}
		if n == 3 {
			break
		}
	}

	// A route change the Envoy rejects.
	route := gwv1.HTTPRoute{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web"}}
	prev := ""
	updateObject(t, e.ctx, e.c, &route, func() { route.Spec.Hostnames = append(route.Spec.Hostnames, "shop.example.com") })
	r := next(t, envoy, resourcev3.RouteType)
	if err := envoy.Nack(r, prev, "route: duplicate virtual host domain (test)"); err != nil {
		t.Fatal(err)
	}
	bad := e.gatewayCondition("shop", "edge", "Programmed", metav1.ConditionFalse, "Invalid")
	if c := findCond(bad.Status.Conditions, "Programmed"); !contains([]string{c.Message}, "duplicate virtual host domain (test)") {
		t.Errorf("Programmed message %q does not carry Envoy's error", c.Message)
	}
	// The next version is accepted: Programmed again.
	updateObject(t, e.ctx, e.c, &route, func() { route.Spec.Hostnames = []gwv1.Hostname{"web.example.com"} })
	if err := envoy.Ack(next(t, envoy, resourcev3.RouteType)); err != nil {
		t.Fatal(err)
	}
	e.gatewayCondition("shop", "edge", "Programmed", metav1.ConditionTrue, "Programmed")

	// The Gateway moves to a class that is not Berth's: its fleet goes.
	e.create(&gwv1.GatewayClass{ObjectMeta: metav1.ObjectMeta{Name: "other"}, Spec: gwv1.GatewayClassSpec{ControllerName: "example.com/other"}})
	updateObject(t, e.ctx, e.c, &gw, func() { gw.Spec.GatewayClassName = "other" })
	e.eventually("fleet removed", func() error {
		for _, o := range []client.Object{&appsv1.Deployment{}, &corev1.Service{}, &corev1.ServiceAccount{}} {
			err := e.c.Get(e.ctx, client.ObjectKey{Namespace: "berth-system", Name: base}, o)
			if err == nil {
				return fmt.Errorf("%T %s still there", o, base)
			}
			if client.IgnoreNotFound(err) != nil {
				return err
			}
		}
		return nil
	})
}

// A route to a Service in another namespace is refused until a
// ReferenceGrant there allows it, and served after.
func TestGatewayReferenceGrant(t *testing.T) {
	e := newGWEnv(t)
	for _, ns := range []string{"front", "back"} {
		e.create(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})
	}
	e.create(berthClass())
	svc, slice := webService("back", "api", "10.2.0.1")
	e.create(svc)
	e.create(slice)
	e.create(httpGateway("front", "edge"))
	e.create(httpRoute("front", "api", "front", "edge", "api.example.com", "back", "api"))
	e.routeCondition("front", "api", "ResolvedRefs", metav1.ConditionFalse, "RefNotPermitted")
	e.routeCondition("front", "api", "Accepted", metav1.ConditionTrue, "Accepted")

	e.create(&gwv1b1.ReferenceGrant{
		ObjectMeta: metav1.ObjectMeta{Namespace: "back", Name: "front-to-api"},
		Spec: gwv1b1.ReferenceGrantSpec{
			From: []gwv1b1.ReferenceGrantFrom{{Group: gwv1.GroupName, Kind: "HTTPRoute", Namespace: "front"}},
			To:   []gwv1b1.ReferenceGrantTo{{Group: "", Kind: "Service"}},
		},
	})
	e.routeCondition("front", "api", "ResolvedRefs", metav1.ConditionTrue, "ResolvedRefs")
	// And the Envoy is sent the cluster of the other namespace's Service.
	_, cfg := e.envoy("front", "edge", "envoy-b")
	var clusters []string
	for _, m := range cfg[resourcev3.ClusterType] {
		clusters = append(clusters, m.(*clusterv3.Cluster).Name)
	}
	if !contains(clusters, "back/api/8080") {
		t.Errorf("clusters %v, want back/api/8080", clusters)
	}
	e.gatewayCondition("front", "edge", "Programmed", metav1.ConditionTrue, "Programmed")
}

func ptrTrue() *bool { b := true; return &b }

func findCond(conds []metav1.Condition, typ string) metav1.Condition {
	for _, c := range conds {
		if c.Type == typ {
			return c
		}
	}
	return metav1.Condition{}
}
