package chart_test

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// TestIngressHostClaim: ingress.ingressClass.hostClaim becomes the class's
// berth.dev/ingress-host-claim annotation, beside the default-class one;
// unset leaves the class without it (hosts shared, as before); a value
// berth-controller does not know is refused at install.
func TestIngressHostClaim(t *testing.T) {
	annotations := func(sets ...string) map[string]string {
		ic := mustRender(t, sets...).must(t, "IngressClass", "berth")
		a, _, _ := unstructured.NestedStringMap(ic.Object, "metadata", "annotations")
		return a
	}
	if a := annotations(); len(a) != 0 {
		t.Errorf("default IngressClass annotations %v, want none", a)
	}
	a := annotations("ingress.ingressClass.hostClaim=first-namespace", "ingress.ingressClass.default=true")
	if a["berth.dev/ingress-host-claim"] != "first-namespace" || a["ingressclass.kubernetes.io/is-default-class"] != "true" || len(a) != 2 {
		t.Errorf("IngressClass annotations %v, want the host claim first-namespace and the default class", a)
	}
	_, err := render(t, "ingress.ingressClass.hostClaim=first-namespaces")
	if err == nil || !strings.Contains(err.Error(), "/ingress/ingressClass/hostClaim") {
		t.Errorf("hostClaim first-namespaces: %v, want a schema error at /ingress/ingressClass/hostClaim", err)
	}
}
