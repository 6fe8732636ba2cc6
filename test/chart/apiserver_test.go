package chart_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/berthnet/berth/test/kubetest"
)

// Every object the chart renders, for each way of installing it, is
// accepted by a real kube-apiserver (server-side dry-run, strict field
// validation) that has the chart's crds/ installed; and helm itself
// installs the chart there and upgrades it, keeping the heartbeat key.
func TestAPIServer(t *testing.T) {
	env := kubetest.Start(t, kubetest.Options{CRDPaths: []string{filepath.Join(chartDir(t), "crds")}})
	c, err := client.New(env.Config, client.Options{FieldValidation: metav1.FieldValidationStrict})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}); err != nil {
		t.Fatal(err)
	}

	t.Run("dry-run", func(t *testing.T) {
		for name, sets := range map[string][]string{
			"default":            nil,
			"full stack":         append(fullStack, withObjects...),
			"beside another CNI": beside,
			"only LoadBalancer":  onlyLB,
			"lb off":             {"loadBalancer.enabled=false", "gateway.enabled=false", "ingress.enabled=false"},
			"pod network bgp":    append([]string{"podNetwork.mode=bgp", "ingress.ingressClass.default=true"}, withObjects...),
		} {
			objs := mustRender(t, sets...)
			kinds := map[string]bool{}
			for _, o := range objs {
				kinds[o.GetKind()] = true
				if err := c.Create(ctx, o.DeepCopy(), client.DryRunAll); err != nil {
					t.Errorf("%s: %s %s refused: %v", name, o.GetKind(), o.GetName(), err)
				}
			}
			if !kinds["Deployment"] || !kinds["ClusterRole"] {
				t.Errorf("%s: rendered only %v", name, objs.names())
			}
		}
	})

	t.Run("a pool the schema passes and the CRD refuses", func(t *testing.T) {
		// The schema checks each address's form; the CRD's rules check the
		// rest, here a range whose first address is after its last.
		objs := mustRender(t, "loadBalancer.ipPools[0].name=backwards", "loadBalancer.ipPools[0].spec.addresses[0]=192.0.2.20-192.0.2.10")
		err := c.Create(ctx, objs.must(t, "IPPool", "backwards").DeepCopy(), client.DryRunAll)
		if err == nil || !strings.Contains(err.Error(), "the first address must not be after the last") {
			t.Errorf("IPPool with a backwards range: %v", err)
		}
	})

	t.Run("helm install and upgrade", func(t *testing.T) {
		kubeconfig, _ := env.User(t, "helm-admin", "system:masters")
		base := []string{"--kubeconfig", kubeconfig, "--namespace", namespace}
		out, err := helm(t, append(append([]string{"install", release, chartDir(t)}, base...), setArgs(withObjects)...)...)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(out, "STATUS: deployed") || !strings.Contains(out, "kubectl -n berth-system get lease berth-controller.berth.dev") {
			t.Errorf("helm install printed:\n%s", out)
		}
		key := func() string {
			var s corev1.Secret
			if err := c.Get(ctx, client.ObjectKey{Namespace: namespace, Name: "berth-l2-key"}, &s); err != nil {
				t.Fatal(err)
			}
			return string(s.Data["key"])
		}
		first := key()
		if len(first) < 16 {
			t.Fatalf("heartbeat key %q", first)
		}
		// An upgrade that changes something must keep the key: agents with
		// different keys take each other for dead.
		if _, err := helm(t, append(append([]string{"upgrade", release, chartDir(t)}, base...), setArgs(append(withObjects, "envoy.replicas=3"))...)...); err != nil {
			t.Fatal(err)
		}
		if again := key(); again != first {
			t.Errorf("upgrade changed the heartbeat key %q to %q", first, again)
		}
		for _, o := range []struct {
			gvk      schema.GroupVersionKind
			ns, name string
		}{
			{schema.GroupVersionKind{Group: "apps", Version: "v1", Kind: "DaemonSet"}, namespace, "berth-agent"},
			{schema.GroupVersionKind{Group: "berth.dev", Version: "v1alpha1", Kind: "IPPool"}, "", "lan"},
			{schema.GroupVersionKind{Group: "gateway.networking.k8s.io", Version: "v1", Kind: "GatewayClass"}, "", "berth"},
		} {
			u := object(o.gvk)
			if err := c.Get(ctx, client.ObjectKey{Namespace: o.ns, Name: o.name}, u); err != nil {
				t.Errorf("after helm upgrade: %s %s: %v", o.gvk.Kind, o.name, err)
			}
		}
		var ctl = object(schema.GroupVersionKind{Group: "apps", Version: "v1", Kind: "Deployment"})
		if err := c.Get(ctx, client.ObjectKey{Namespace: namespace, Name: "berth-controller"}, ctl); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(strings.Join(args(container(t, ctl)), " "), "--envoy-replicas=3") {
			t.Errorf("upgrade did not reach the controller's flags: %v", args(container(t, ctl)))
		}
		if _, err := helm(t, append([]string{"uninstall", release}, base...)...); err != nil {
			t.Fatal(err)
		}
	})
}

func object(gvk schema.GroupVersionKind) *unstructured.Unstructured {
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(gvk)
	return u
}
