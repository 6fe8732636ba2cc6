package provision

import (
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
)

func fleet() Fleet {
	return Fleet{
		Group: "gateway/shop/edge", Namespace: "shop", Name: ObjectName("gw", "edge"),
		Owner:           metav1.OwnerReference{APIVersion: "gateway.networking.k8s.io/v1", Kind: "Gateway", Name: "edge", UID: "u1"},
		Ports:           []int32{443, 80, 8080, 80},
		LoadBalancerIPs: []string{"198.51.100.7"},
	}
}

func TestObjects(t *testing.T) {
	f := fleet()
	sa, cm, dep, svc := Objects(f, []byte("node: {}"), Options{})
	for _, m := range []metav1.Object{sa, cm, dep, svc} {
		if m.GetNamespace() != "shop" || len(m.GetOwnerReferences()) != 1 || m.GetOwnerReferences()[0].UID != "u1" {
			t.Errorf("%s: namespace %q owners %v, want shop and the Gateway", m.GetName(), m.GetNamespace(), m.GetOwnerReferences())
		}
		if m.GetAnnotations()[AnnotationGroup] != f.Group {
			t.Errorf("%s: group annotation %q", m.GetName(), m.GetAnnotations()[AnnotationGroup])
		}
	}
	// Service: one port per distinct listener port, each to the port Envoy binds.
	var got []string
	for _, p := range svc.Spec.Ports {
		got = append(got, p.Name+"="+p.TargetPort.String())
	}
	if want := "l-80=10080 l-443=10443 l-8080=8080"; strings.Join(got, " ") != want {
		t.Errorf("service ports %v, want %s", got, want)
	}
	if *svc.Spec.LoadBalancerClass != "berth.dev/lb" || svc.Annotations["berth.dev/load-balancer-ips"] != "198.51.100.7" {
		t.Errorf("service class %q, addresses %q", *svc.Spec.LoadBalancerClass, svc.Annotations["berth.dev/load-balancer-ips"])
	}
	// The pods the Service selects are the Deployment's.
	for k, v := range svc.Spec.Selector {
		if dep.Spec.Template.Labels[k] != v {
			t.Errorf("selector %s=%s not on the pod template", k, v)
		}
	}
	c := dep.Spec.Template.Spec.Containers[0]
	if c.Image != DefaultImage || *dep.Spec.Replicas != 2 || c.ReadinessProbe.HTTPGet.Port.IntValue() != ReadyPort {
		t.Errorf("deployment image %s replicas %d readiness %v", c.Image, *dep.Spec.Replicas, c.ReadinessProbe.HTTPGet.Port)
	}
	if *c.SecurityContext.AllowPrivilegeEscalation || len(c.SecurityContext.Capabilities.Drop) != 1 {
		t.Errorf("container security context %+v", c.SecurityContext)
	}
	if cm.Data[BootstrapKey] != "node: {}" {
		t.Errorf("bootstrap %q", cm.Data[BootstrapKey])
	}
}

func TestBootstrapChangeRollsPods(t *testing.T) {
	_, _, a, _ := Objects(fleet(), []byte("a"), Options{})
	_, _, b, _ := Objects(fleet(), []byte("b"), Options{})
	if a.Spec.Template.Annotations["berth.dev/bootstrap-sha256"] == b.Spec.Template.Annotations["berth.dev/bootstrap-sha256"] {
		t.Error("a changed bootstrap leaves the pod template unchanged: pods would keep the old one")
	}
}

func TestObjectNameFitsLabel(t *testing.T) {
	for _, n := range []string{"a", strings.Repeat("x", 63), strings.Repeat("y", 253)} {
		base := ObjectName("gw", n)
		for _, name := range []string{base, SecretName(base), ConfigMapName(base)} {
			if errs := validation.IsDNS1123Label(name); len(errs) > 0 {
				t.Errorf("ObjectName(%d chars) -> %q: %v", len(n), name, errs)
			}
		}
	}
	if ObjectName("gw", strings.Repeat("x", 60)+"a") == ObjectName("gw", strings.Repeat("x", 60)+"b") {
		t.Error("two long names share one object name")
	}
	if GroupHash("gateway/a/b") == GroupHash("gateway/a/c") || len(validation.IsValidLabelValue(GroupHash("gateway/a/b"))) > 0 {
		t.Error("group hashes collide or are not label values")
	}
}
