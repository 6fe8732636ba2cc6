package e2e

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"testing"

	"github.com/google/go-cmp/cmp"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"

	"github.com/berthnet/berth/lab"
	"github.com/berthnet/berth/test/kubetest"
)

// The lab installs the RBAC objects the chart renders into berth-system,
// and only those: the same ServiceAccounts, roles with the same rules, and
// bindings with the same roles and subjects (labels aside). With the
// default values and with the whole stack on.
func TestLabRBACIsTheChart(t *testing.T) {
	root, err := kubetest.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	helm := os.Getenv("HELM")
	if helm == "" {
		found, _ := filepath.Glob(filepath.Join(root, "bin", "tools", "helm-v*"))
		if len(found) == 0 {
			t.Fatal("no helm in bin/tools: run `make test-deps`")
		}
		helm = found[len(found)-1]
	}
	labManifests, err := lab.RBACManifests()
	if err != nil {
		t.Fatal(err)
	}
	want := rbacObjects(t, labManifests)
	for name, sets := range map[string][]string{
		"defaults": nil,
		// The whole stack, as the lab runs it (the defaults lack only the
		// service proxy).
		"whole stack": {"--set", "serviceProxy.enabled=true", "--set", "kubernetesAPI.host=192.0.2.1"},
	} {
		t.Run(name, func(t *testing.T) {
			cmd := exec.Command(helm, append([]string{"template", "berth", filepath.Join(root, "charts", "berth"),
				"--namespace", lab.Namespace, "--kube-version", "1.37.2"}, sets...)...)
			cmd.Env = append(os.Environ(), "HELM_CONFIG_HOME="+t.TempDir(), "HELM_CACHE_HOME="+t.TempDir(), "HELM_DATA_HOME="+t.TempDir())
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("helm template: %v: %s", err, stderr.String())
			}
			got := rbacObjects(t, out)
			if d := cmp.Diff(want, got); d != "" {
				t.Errorf("the lab's RBAC objects differ from the chart's (-lab +chart):\n%s", d)
			}
		})
	}
}

// rbacObject is what of an RBAC object decides who may do what.
type rbacObject struct {
	Rules    []rbacv1.PolicyRule `json:",omitempty"`
	RoleRef  rbacv1.RoleRef      `json:",omitempty"`
	Subjects []rbacv1.Subject    `json:",omitempty"`
}

// rbacObjects decodes the ServiceAccounts, roles and bindings of a
// multi-document YAML, keyed "Kind namespace/name".
func rbacObjects(t *testing.T, manifests []byte) map[string]rbacObject {
	t.Helper()
	out := map[string]rbacObject{}
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(manifests), 4096)
	for {
		var u unstructured.Unstructured
		if err := dec.Decode(&u.Object); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		var o rbacObject
		switch u.GetKind() {
		case "ServiceAccount":
		case "ClusterRole", "Role":
			var r rbacv1.ClusterRole
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &r); err != nil {
				t.Fatal(err)
			}
			o.Rules = r.Rules
		case "ClusterRoleBinding", "RoleBinding":
			var b rbacv1.RoleBinding
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &b); err != nil {
				t.Fatal(err)
			}
			o.RoleRef, o.Subjects = b.RoleRef, b.Subjects
			sort.Slice(o.Subjects, func(i, j int) bool { return o.Subjects[i].Name < o.Subjects[j].Name })
		default:
			continue
		}
		key := u.GetKind() + " " + u.GetNamespace() + "/" + u.GetName()
		if _, dup := out[key]; dup {
			t.Fatalf("%s twice", key)
		}
		out[key] = o
	}
	if len(out) == 0 {
		t.Fatal("no RBAC objects")
	}
	return out
}
