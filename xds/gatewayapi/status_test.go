package gatewayapi

import (
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// TestSetProgrammed walks one Gateway through the controller's steps:
// translated, address assigned, ACKed, NACKed; an invalid listener stays
// Programmed=False throughout.
func TestSetProgrammed(t *testing.T) {
	res := base()
	res.Gateways[0].Spec.Listeners = append(res.Gateways[0].Spec.Listeners, gwv1.Listener{Name: "tcp", Port: 9000, Protocol: gwv1.TCPProtocolType})
	gr := Translate(res, Options{}).Gateways[0]
	addr := []gwv1.GatewayStatusAddress{{Value: "192.0.2.1"}}
	for _, step := range []struct {
		p                 Programming
		gateway, listener metav1.ConditionStatus
		reason            string
	}{
		{Programming{}, metav1.ConditionUnknown, metav1.ConditionUnknown, "Pending"},
		{Programming{Acked: true}, metav1.ConditionFalse, metav1.ConditionTrue, "AddressNotAssigned"},
		{Programming{Acked: true, Addresses: addr}, metav1.ConditionTrue, metav1.ConditionTrue, "Programmed"},
		{Programming{Rejected: "bad regex", Addresses: addr}, metav1.ConditionFalse, metav1.ConditionFalse, "Invalid"},
		{Programming{Acked: true, Addresses: addr}, metav1.ConditionTrue, metav1.ConditionTrue, "Programmed"},
	} {
		SetProgrammed(&gr.Status, 7, step.p)
		c := findCondition(gr.Status.Conditions, "Programmed")
		if c == nil || c.Status != step.gateway || c.Reason != step.reason || c.ObservedGeneration != 7 {
			t.Fatalf("%+v: Gateway Programmed = %+v, want %s %s", step.p, c, step.gateway, step.reason)
		}
		if l := findCondition(gr.Status.Listeners[0].Conditions, "Programmed"); l.Status != step.listener {
			t.Fatalf("%+v: listener http Programmed = %+v, want %s", step.p, l, step.listener)
		}
		if l := findCondition(gr.Status.Listeners[1].Conditions, "Programmed"); l.Status != metav1.ConditionFalse || l.Reason != "Invalid" {
			t.Fatalf("%+v: listener tcp Programmed = %+v, want False Invalid", step.p, l)
		}
	}
	if len(gr.Status.Addresses) != 1 {
		t.Fatalf("addresses = %v", gr.Status.Addresses)
	}
}

func TestMergeRouteParents(t *testing.T) {
	other := gwv1.RouteParentStatus{ControllerName: "example.com/other", ParentRef: gwv1.ParentReference{Name: "x"}}
	stale := gwv1.RouteParentStatus{ControllerName: GatewayControllerName, ParentRef: gwv1.ParentReference{Name: "gone"}}
	ours := gwv1.RouteParentStatus{ControllerName: GatewayControllerName, ParentRef: gwv1.ParentReference{Name: "gw"}}
	got := MergeRouteParents([]gwv1.RouteParentStatus{other, stale}, []gwv1.RouteParentStatus{ours}, GatewayControllerName)
	if len(got) != 2 || got[0].ParentRef.Name != "x" || got[1].ParentRef.Name != "gw" {
		t.Fatalf("got %+v", got)
	}
}
