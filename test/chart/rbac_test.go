package chart_test

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// The chart's roles are exactly those controller-gen generates into
// config/rbac from the kubebuilder markers (and whose comments justify each
// rule), bound to the chart's own ServiceAccounts.
func TestRolesAreTheGeneratedOnes(t *testing.T) {
	root := repoRoot(t)
	objs := mustRender(t)
	for _, component := range []string{"controller", "agent"} {
		generated := decode(t, readFile(t, filepath.Join(root, "config", "rbac", component, "role.yaml")))
		if len(generated) == 0 {
			t.Fatalf("config/rbac/%s/role.yaml holds no role", component)
		}
		for _, g := range generated {
			var want rbacv1.ClusterRole // a Role has the same fields that matter
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(g.Object, &want); err != nil {
				t.Fatal(err)
			}
			r := objs.get(g.GetKind(), g.GetName())
			if r == nil {
				t.Errorf("the chart has no %s %s (config/rbac/%s)", g.GetKind(), g.GetName(), component)
				continue
			}
			var got rbacv1.ClusterRole
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(r.Object, &got); err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(want.Rules, got.Rules); d != "" {
				t.Errorf("%s %s rules differ from config/rbac/%s (-generated +chart):\n%s", g.GetKind(), g.GetName(), component, d)
			}
			if g.GetKind() == "Role" && r.GetNamespace() != namespace {
				t.Errorf("Role %s in namespace %q, want the release's %q", r.GetName(), r.GetNamespace(), namespace)
			}
			bindingKind := map[string]string{"ClusterRole": "ClusterRoleBinding", "Role": "RoleBinding"}[g.GetKind()]
			b := objs.get(bindingKind, g.GetName())
			if b == nil {
				t.Errorf("no %s for %s %s", bindingKind, g.GetKind(), g.GetName())
				continue
			}
			var binding rbacv1.RoleBinding
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(b.Object, &binding); err != nil {
				t.Fatal(err)
			}
			wantSubjects := []rbacv1.Subject{{Kind: "ServiceAccount", Name: "berth-" + component, Namespace: namespace}}
			if binding.RoleRef.Kind != g.GetKind() || binding.RoleRef.Name != g.GetName() || !slices.Equal(binding.Subjects, wantSubjects) {
				t.Errorf("%s %s binds %v to %v, want %s %s to %v", bindingKind, b.GetName(), binding.RoleRef, binding.Subjects, g.GetKind(), g.GetName(), wantSubjects)
			}
			objs.must(t, "ServiceAccount", "berth-"+component)
		}
	}
	// Nothing else grants anything.
	for _, k := range []string{"ClusterRole", "Role", "ClusterRoleBinding", "RoleBinding"} {
		if n := len(objs.ofKind(k)); n != 2 {
			t.Errorf("%d %ss rendered, want 2 (controller, agent): %v", n, k, objs.ofKind(k).names())
		}
	}
	// The agent reads Secrets (BGP passwords) in its own namespace only.
	var agent rbacv1.ClusterRole
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(objs.must(t, "ClusterRole", "berth-agent").Object, &agent); err != nil {
		t.Fatal(err)
	}
	for _, r := range agent.Rules {
		if slices.Contains(r.Resources, "secrets") || slices.Contains(r.Resources, "*") {
			t.Errorf("the agent's ClusterRole reaches Secrets cluster-wide: %v", r)
		}
	}
}

// hack/chart-files.sh keeps the chart's CRDs and roles identical to config/;
// `make verify` re-runs it, this says which file drifted.
func TestChartCopiesMatchConfig(t *testing.T) {
	root := repoRoot(t)
	chart := chartDir(t)
	want := map[string]string{} // chart path -> config path
	for _, dir := range []string{"config/crd/bases", "config/crd/gateway-api"} {
		files, _ := filepath.Glob(filepath.Join(root, dir, "*.yaml"))
		for _, f := range files {
			want[filepath.Join(chart, "crds", filepath.Base(f))] = f
		}
	}
	for _, c := range []string{"controller", "agent"} {
		want[filepath.Join(chart, "files", "rbac", c+".yaml")] = filepath.Join(root, "config", "rbac", c, "role.yaml")
	}
	if len(want) < 11 {
		t.Fatalf("only %d files to compare: config/ is incomplete", len(want))
	}
	for copyPath, src := range want {
		if !bytes.Equal([]byte(readFile(t, copyPath)), []byte(readFile(t, src))) {
			t.Errorf("%s differs from %s: run `make manifests`", copyPath, src)
		}
	}
	for _, dir := range []string{filepath.Join(chart, "crds"), filepath.Join(chart, "files", "rbac")} {
		files, _ := filepath.Glob(filepath.Join(dir, "*"))
		for _, f := range files {
			if _, ok := want[f]; !ok {
				t.Errorf("%s is not a copy of anything in config/: run `make manifests`", f)
			}
		}
	}
}

func readFile(t testing.TB, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
