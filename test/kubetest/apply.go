package kubetest

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Apply server-side applies every object in a multi-document YAML file, as
// `kubectl apply --server-side` would, and fails the test on any error.
func Apply(t testing.TB, cfg *rest.Config, path string) {
	t.Helper()
	c, err := client.New(cfg, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(raw), 4096)
	for {
		var obj unstructured.Unstructured
		if err := dec.Decode(&obj.Object); err != nil {
			if errors.Is(err, io.EOF) {
				return
			}
			t.Fatalf("%s: %v", path, err)
		}
		if len(obj.Object) == 0 {
			continue
		}
		if err := c.Apply(context.Background(), client.ApplyConfigurationFromUnstructured(&obj), client.FieldOwner("berth-test"), client.ForceOwnership); err != nil {
			t.Fatalf("%s: apply %s %s: %v", path, obj.GetKind(), obj.GetName(), err)
		}
	}
}
