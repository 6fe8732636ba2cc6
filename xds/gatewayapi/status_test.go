package gatewayapi

import (
	"strings"
	"testing"
	"unicode/utf8"

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
		// The address cannot be assigned: said so before any Envoy answers.
		{Programming{AddressProblem: "RequestedIPNotInPool: 203.0.113.9 is in no pool"}, metav1.ConditionFalse, metav1.ConditionUnknown, "AddressNotAssigned"},
		{Programming{Acked: true, AddressProblem: "PoolExhausted: no free address"}, metav1.ConditionFalse, metav1.ConditionTrue, "AddressNotAssigned"},
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
	c := findCondition(gr.Status.Conditions, "Programmed")
	if c.Message != "Envoy serves the configuration" {
		t.Fatalf("Programmed message %q", c.Message)
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

// TestSetProgrammedAddressProblem: IPAM's reason reaches the message.
func TestSetProgrammedAddressProblem(t *testing.T) {
	gr := Translate(base(), Options{}).Gateways[0]
	SetProgrammed(&gr.Status, 1, Programming{AddressProblem: "RequestedIPNotInPool: 203.0.113.9 is in no pool"})
	c := findCondition(gr.Status.Conditions, "Programmed")
	want := "the Gateway's Service cannot be given an address: RequestedIPNotInPool: 203.0.113.9 is in no pool"
	if c.Status != metav1.ConditionFalse || c.Reason != "AddressNotAssigned" || c.Message != want {
		t.Fatalf("Programmed = %+v, want False AddressNotAssigned %q", c, want)
	}
}

// TestNACKMessageBounded: a 40 kB NACK (two-byte runes, so a cut by bytes
// can split one) is quoted in the Gateway's and the listener's Programmed
// conditions cut to 8 KiB on a rune boundary, its start kept.
func TestNACKMessageBounded(t *testing.T) {
	gr := Translate(base(), Options{}).Gateways[0]
	nack := "RouteConfiguration version 3 (node e1): " + strings.Repeat("é", 20000) + "the end"
	SetProgrammed(&gr.Status, 1, Programming{Rejected: nack})
	for _, c := range []*metav1.Condition{findCondition(gr.Status.Conditions, "Programmed"), findCondition(gr.Status.Listeners[0].Conditions, "Programmed")} {
		if c.Status != metav1.ConditionFalse || c.Reason != "Invalid" {
			t.Fatalf("Programmed = %s %s, want False Invalid", c.Status, c.Reason)
		}
		if len(c.Message) > 8192 || !utf8.ValidString(c.Message) {
			t.Fatalf("message of %d bytes, valid UTF-8 %v: want at most 8192, valid", len(c.Message), utf8.ValidString(c.Message))
		}
		if !strings.HasPrefix(c.Message, "Envoy rejected the configuration: RouteConfiguration version 3 (node e1): ééé") ||
			!strings.HasSuffix(c.Message, "é ... (truncated)") {
			t.Fatalf("message %q...%q", c.Message[:100], c.Message[len(c.Message)-30:])
		}
	}
}

func TestBoundMessage(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"short", "short"},
		{"", ""},
		{"bad \xff byte", "bad \uFFFD byte"},
		{strings.Repeat("a", 8192), strings.Repeat("a", 8192)},
		{strings.Repeat("a", 8193), strings.Repeat("a", 8176) + " ... (truncated)"},
		// 8176 bytes are kept: 2,725 three-byte runes end at 8175; the
		// next rune would end past the cut, so it is left out whole.
		{strings.Repeat("€", 3000), strings.Repeat("€", 2725) + " ... (truncated)"},
	} {
		if got := boundMessage(tc.in); got != tc.want {
			t.Errorf("boundMessage(%.20q... %d bytes) = %.20q... %d bytes, want %d bytes", tc.in, len(tc.in), got, len(got), len(tc.want))
		}
	}
}
