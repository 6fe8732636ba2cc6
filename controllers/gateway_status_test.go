package controllers_test

import (
	"strings"
	"testing"
	"unicode/utf8"

	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// A 40 kB NACK reaches the Gateway's status cut to fit a condition
// message: the API server takes the status write, so Programmed turns
// False with the start of Envoy's words, in valid UTF-8. Before the cut,
// the write was refused (the CRD's maxLength, 32,768 characters) and the
// Gateway stayed Programmed True while Envoy refused its routes. (The
// limit counts characters: the cut at a rune boundary is TestBoundMessage's.)
func TestGatewayNACKTooLongForStatus(t *testing.T) {
	e := newGWEnv(t)
	e.create(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "nack-long"}})
	e.create(berthClass())
	svc, slice := webService("nack-long", "web", "10.7.0.1")
	e.create(svc)
	e.create(slice)
	e.create(httpGateway("nack-long", "edge"))
	e.create(httpRoute("nack-long", "web", "nack-long", "edge", "web.example.com", "nack-long", "web"))

	// Translation has the route before the Envoy fetches (statuses are
	// written after the snapshot is served): the one version it ACKs is
	// the last until the route changes.
	e.routeCondition("nack-long", "web", "Accepted", metav1.ConditionTrue, "Accepted")
	envoy, _ := e.envoy("nack-long", "edge", "envoy-nack")
	e.gatewayCondition("nack-long", "edge", "Programmed", metav1.ConditionTrue, "Programmed")

	route := gwv1.HTTPRoute{ObjectMeta: metav1.ObjectMeta{Namespace: "nack-long", Name: "web"}}
	updateObject(t, e.ctx, e.c, &route, func() { route.Spec.Hostnames = append(route.Spec.Hostnames, "more.example.com") })
	r := next(t, envoy, resourcev3.RouteType)
	nack := "start of the error: " + strings.Repeat("x", 40000) + "é"
	if err := envoy.Nack(r, "", nack); err != nil {
		t.Fatal(err)
	}
	gw := e.gatewayCondition("nack-long", "edge", "Programmed", metav1.ConditionFalse, "Invalid")
	conds := [][]metav1.Condition{gw.Status.Conditions}
	for _, l := range gw.Status.Listeners {
		conds = append(conds, l.Conditions)
	}
	for _, cs := range conds {
		c := findCond(cs, "Programmed")
		if c.Status != metav1.ConditionFalse {
			t.Fatalf("Programmed = %+v, want False", c)
		}
		if len(c.Message) > 32768 || !utf8.ValidString(c.Message) || !strings.Contains(c.Message, "start of the error: xx") {
			t.Errorf("Programmed message of %d bytes (valid UTF-8: %v), want at most 32768 bytes, valid, with the NACK's start: %.120q",
				len(c.Message), utf8.ValidString(c.Message), c.Message)
		}
	}
}

// A Gateway asking for an address no pool holds is Programmed False,
// AddressNotAssigned, with IPAM's reason, though no Envoy answered yet
// (before: Unknown/Pending, saying nothing of the address).
func TestGatewayAddressNotAssigned(t *testing.T) {
	e := newGWEnv(t)
	e.create(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "addr-none"}})
	e.create(berthClass())
	gw := httpGateway("addr-none", "edge")
	ip := gwv1.IPAddressType
	gw.Spec.Addresses = []gwv1.GatewaySpecAddress{{Type: &ip, Value: "203.0.113.9"}}
	e.create(gw)
	got := e.gatewayCondition("addr-none", "edge", "Programmed", metav1.ConditionFalse, "AddressNotAssigned")
	if c := findCond(got.Status.Conditions, "Programmed"); !strings.Contains(c.Message, "RequestedIPNotInPool") || !strings.Contains(c.Message, "203.0.113.9") {
		t.Errorf("Programmed message %q does not say why the address cannot be assigned", c.Message)
	}
}
