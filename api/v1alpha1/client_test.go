package v1alpha1_test

import (
	"path/filepath"
	"testing"

	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/berthnet/berth/api/v1alpha1"
	"github.com/berthnet/berth/test/kubetest"
)

// apiClient starts a real API server with Berth's CRDs and returns a client
// that knows the group's kinds.
func apiClient(t *testing.T) client.Client {
	t.Helper()
	env := kubetest.Start(t, kubetest.Options{CRDPaths: []string{filepath.Join("..", "..", "config", "crd", "bases")}})
	s := runtime.NewScheme()
	if err := v1alpha1.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	c, err := client.New(env.Config, client.Options{Scheme: s})
	if err != nil {
		t.Fatal(err)
	}
	return c
}
