package provision

import (
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
)

func fleet() Fleet {
	return Fleet{
		Group: "gateway/shop/edge", Namespace: "berth-system", Name: GatewayFleetName("shop", "edge"),
		Gateway:         types.NamespacedName{Namespace: "shop", Name: "edge"},
		Ports:           []int32{443, 80, 8080, 80},
		LoadBalancerIPs: []string{"198.51.100.7"},
	}
}

func TestObjects(t *testing.T) {
	f := fleet()
	sa, cm, dep, svc := Objects(f, []byte("node: {}"), Options{})
	for _, m := range []metav1.Object{sa, cm, dep, svc, &dep.Spec.Template} {
		if m == metav1.Object(&dep.Spec.Template) {
			m.SetNamespace("berth-system") // a template has none of its own
		}
		// Berth's namespace, no owner across namespaces, the Gateway in labels.
		if m.GetNamespace() != "berth-system" || len(m.GetOwnerReferences()) != 0 {
			t.Errorf("%s: namespace %q owners %v, want berth-system and none", m.GetName(), m.GetNamespace(), m.GetOwnerReferences())
		}
		l := m.GetLabels()
		if l[LabelGatewayNamespace] != "shop" || l[LabelGatewayName] != "edge" || m.GetAnnotations()[AnnotationGateway] != "shop/edge" {
			t.Errorf("%s: labels %v annotations %v, want the Gateway shop/edge", m.GetName(), l, m.GetAnnotations())
		}
		if m.GetAnnotations()[AnnotationGroup] != f.Group {
			t.Errorf("%s: group annotation %q", m.GetName(), m.GetAnnotations()[AnnotationGroup])
		}
	}
	if dep.Name != "berth-gw-shop-edge-3788f37a" {
		t.Errorf("fleet named %q", dep.Name)
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

// A reissued client certificate changes the pod template (Envoy reads the
// files once), the same one leaves it alone.
func TestCertificateChangeRollsPods(t *testing.T) {
	f := fleet()
	f.CertSerial = "1a2b"
	_, _, a, _ := Objects(f, []byte("a"), Options{})
	_, _, same, _ := Objects(f, []byte("a"), Options{})
	f.CertSerial = "3c4d"
	_, _, b, _ := Objects(f, []byte("a"), Options{})
	if got := a.Spec.Template.Annotations[AnnotationCertSerial]; got != "1a2b" {
		t.Errorf("pod template serial %q, want 1a2b", got)
	}
	if b.Spec.Template.Annotations[AnnotationCertSerial] != "3c4d" || same.Spec.Template.Annotations[AnnotationCertSerial] != "1a2b" {
		t.Errorf("serials %q then %q, want 1a2b then 3c4d", same.Spec.Template.Annotations[AnnotationCertSerial], b.Spec.Template.Annotations[AnnotationCertSerial])
	}
}

// An IngressClass's fleet keeps its owner (cluster-scoped, so allowed).
func TestIngressFleetOwned(t *testing.T) {
	f := Fleet{Group: "ingress/berth", Namespace: "berth-system", Name: ObjectName("ingress", "berth"),
		Owner: &metav1.OwnerReference{APIVersion: "networking.k8s.io/v1", Kind: "IngressClass", Name: "berth", UID: "u2"}, Ports: []int32{80}}
	sa, _, _, svc := Objects(f, nil, Options{})
	for _, m := range []metav1.Object{sa, svc} {
		if len(m.GetOwnerReferences()) != 1 || m.GetOwnerReferences()[0].UID != "u2" || m.GetLabels()[LabelGatewayNamespace] != "" {
			t.Errorf("%s: owners %v labels %v, want the IngressClass and no Gateway", m.GetName(), m.GetOwnerReferences(), m.GetLabels())
		}
	}
}

// Names of Gateway fleets, written out by hand (the hash is the first 8
// hex digits of sha256("<namespace>/<name>"), from sha256sum).
func TestGatewayFleetName(t *testing.T) {
	for _, c := range []struct{ ns, name, want string }{
		{"shop", "edge", "berth-gw-shop-edge-3788f37a"},
		// The same readable part; the hash tells them apart.
		{"a-b", "c", "berth-gw-a-b-c-4e84717d"},
		{"a", "b-c", "berth-gw-a-b-c-b88f83c8"},
	} {
		if got := GatewayFleetName(c.ns, c.name); got != c.want {
			t.Errorf("GatewayFleetName(%s, %s) = %q, want %q", c.ns, c.name, got, c.want)
		}
	}
	long := GatewayFleetName(strings.Repeat("n", 63), strings.Repeat("g.", 126)+"g")
	if len(long) != 53 || !strings.HasPrefix(long, "berth-gw-nnnn") {
		t.Errorf("long names: %q (%d chars), want 53 starting berth-gw-nnnn", long, len(long))
	}
	for _, n := range []string{long, GatewayFleetName("x", "a.b")} {
		for _, name := range []string{n, SecretName(n), ConfigMapName(n)} {
			if errs := validation.IsDNS1035Label(name); len(errs) > 0 {
				t.Errorf("%q: %v", name, errs)
			}
		}
	}
	if v := GatewayNameLabel(strings.Repeat("g", 100)); len(v) != 63 || len(validation.IsValidLabelValue(v)) > 0 {
		t.Errorf("name label of a long Gateway name: %q", v)
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
