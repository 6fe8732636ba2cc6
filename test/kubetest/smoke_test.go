package kubetest_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/berthnet/berth/test/kubetest"
)

// The API server starts from bin/k8s, a CRD installs, a client reads and
// writes both built-in and custom objects, and the CRD's schema is enforced.
func TestAPIServerSmoke(t *testing.T) {
	env := kubetest.Start(t, kubetest.Options{CRDPaths: []string{filepath.Join("testdata", "smoke-crd.yaml")}})
	c, err := client.New(env.Config, client.Options{Scheme: scheme.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "smoke"}}
	if err := c.Create(ctx, ns); err != nil {
		t.Fatalf("create namespace: %v", err)
	}
	var got corev1.Namespace
	if err := c.Get(ctx, client.ObjectKey{Name: "smoke"}, &got); err != nil {
		t.Fatalf("get namespace: %v", err)
	}
	if got.UID == "" {
		t.Fatal("namespace has no UID: not stored by a real API server")
	}

	gvk := schema.GroupVersionKind{Group: "test.berth.dev", Version: "v1", Kind: "Smoke"}
	obj := &unstructured.Unstructured{}
	obj.SetGroupVersionKind(gvk)
	obj.SetName("good")
	obj.Object["spec"] = map[string]any{"size": int64(3)}
	if err := c.Create(ctx, obj); err != nil {
		t.Fatalf("create custom object: %v", err)
	}
	back := &unstructured.Unstructured{}
	back.SetGroupVersionKind(gvk)
	if err := c.Get(ctx, client.ObjectKey{Name: "good"}, back); err != nil {
		t.Fatalf("get custom object: %v", err)
	}
	if size, _, _ := unstructured.NestedInt64(back.Object, "spec", "size"); size != 3 {
		t.Fatalf("spec.size = %d, want 3", size)
	}

	bad := &unstructured.Unstructured{}
	bad.SetGroupVersionKind(gvk)
	bad.SetName("bad")
	bad.Object["spec"] = map[string]any{"size": int64(0)}
	err = c.Create(ctx, bad)
	if err == nil || !strings.Contains(err.Error(), "spec.size") {
		t.Fatalf("create with size 0 = %v, want a schema validation error naming spec.size", err)
	}
}
