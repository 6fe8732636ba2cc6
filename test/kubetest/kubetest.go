// Package kubetest starts a real etcd and kube-apiserver for controller
// tests, from the binaries `make test-deps` builds into bin/k8s, through
// controller-runtime's envtest.
package kubetest

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// RepoRoot finds the root of the Berth checkout from the working directory.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && len(b) > 0 && containsModule(b) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no Berth go.mod above the working directory")
		}
		dir = parent
	}
}

func containsModule(gomod []byte) bool {
	const want = "module github.com/berthnet/berth\n"
	return len(gomod) >= len(want) && string(gomod[:len(want)]) == want
}

// BinDir is where the control-plane binaries are: $KUBEBUILDER_ASSETS, else
// bin/k8s in the checkout.
func BinDir() (string, error) {
	if d := os.Getenv("KUBEBUILDER_ASSETS"); d != "" {
		return d, nil
	}
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	return filepath.Join(root, "bin", "k8s"), nil
}

// Options tune the test API server.
type Options struct {
	// CRDs are installed before the test starts.
	CRDPaths []string
	// APIServerFlags override kube-apiserver flags, e.g.
	// "service-cluster-ip-range" for a dual-stack cluster.
	APIServerFlags map[string]string
}

// Env is a running test API server.
type Env struct {
	// Config is a cluster-admin client config.
	Config *rest.Config
	env    *envtest.Environment
}

// Start runs etcd and kube-apiserver for the test and stops them when it ends.
// A missing binary fails the test with the command that builds it.
func Start(t testing.TB, opts Options) *Env {
	t.Helper()
	dir, err := BinDir()
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range []string{"etcd", "kube-apiserver"} {
		if _, err := os.Stat(filepath.Join(dir, b)); err != nil {
			t.Fatalf("%s not found in %s: run `make test-deps`", b, dir)
		}
	}
	env := &envtest.Environment{
		BinaryAssetsDirectory: dir,
		CRDDirectoryPaths:     opts.CRDPaths,
		ErrorIfCRDPathMissing: true,
		// envtest's 20 s is too short on a loaded 2-core machine (make
		// test runs labs beside these tests): kube-apiserver took longer
		// and the test failed before it had begun. A deadline still.
		ControlPlaneStartTimeout: 2 * time.Minute,
		ControlPlaneStopTimeout:  time.Minute,
	}
	for k, v := range opts.APIServerFlags {
		env.ControlPlane.GetAPIServer().Configure().Set(k, v)
	}
	cfg, err := env.Start()
	if err != nil {
		t.Fatalf("start API server: %v", err)
	}
	t.Cleanup(func() {
		if err := env.Stop(); err != nil {
			t.Errorf("stop API server: %v", err)
		}
	})
	return &Env{Config: cfg, env: env}
}

// User provisions a user authenticated by a client certificate, with no
// permissions beyond what RBAC later grants its name or groups, and writes a
// kubeconfig for it. It returns the kubeconfig's path and a client config.
func (e *Env) User(t testing.TB, name string, groups ...string) (string, *rest.Config) {
	t.Helper()
	u, err := e.env.AddUser(envtest.User{Name: name, Groups: groups}, nil)
	if err != nil {
		t.Fatalf("add user %s: %v", name, err)
	}
	kc, err := u.KubeConfig()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), name+".kubeconfig")
	if err := os.WriteFile(path, kc, 0o600); err != nil {
		t.Fatal(err)
	}
	return path, u.Config()
}
