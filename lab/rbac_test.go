package lab

import (
	"bytes"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// The lab's RBAC is the chart's: both ServiceAccounts, every generated role
// verbatim, and each role bound to its component's ServiceAccount alone.
func TestRBACManifests(t *testing.T) {
	b, err := RBACManifests()
	if err != nil {
		t.Fatal(err)
	}
	type key struct{ kind, namespace, name string }
	objs := map[key][]byte{}
	for _, doc := range bytes.Split(b, []byte("\n---\n")) {
		var obj struct {
			metav1.TypeMeta   `json:",inline"`
			metav1.ObjectMeta `json:"metadata"`
		}
		if err := yaml.Unmarshal(doc, &obj); err != nil {
			t.Fatal(err)
		}
		if obj.Kind == "" {
			continue
		}
		k := key{obj.Kind, obj.Namespace, obj.Name}
		if _, dup := objs[k]; dup {
			t.Errorf("%v twice", k)
		}
		objs[k] = doc
	}
	for _, sa := range []string{ControllerServiceAccount, AgentServiceAccount} {
		if _, ok := objs[key{"ServiceAccount", Namespace, sa}]; !ok {
			t.Errorf("no ServiceAccount %s/%s", Namespace, sa)
		}
	}
	bindings := map[string]string{"ClusterRole": "ClusterRoleBinding", "Role": "RoleBinding"}
	roles := 0
	for k := range objs {
		kind, ok := bindings[k.kind]
		if !ok {
			continue
		}
		roles++
		doc, ok := objs[key{kind, k.namespace, k.name}]
		if !ok {
			t.Errorf("%s %s/%s has no %s", k.kind, k.namespace, k.name, kind)
			continue
		}
		var binding struct {
			RoleRef  rbacv1.RoleRef
			Subjects []rbacv1.Subject
		}
		if err := yaml.Unmarshal(doc, &binding); err != nil {
			t.Fatal(err)
		}
		// Roles are named for their component, like its ServiceAccount.
		want := []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: k.name, Namespace: Namespace}}
		if binding.RoleRef != (rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: k.kind, Name: k.name}) ||
			len(binding.Subjects) != 1 || binding.Subjects[0] != want[0] {
			t.Errorf("%s %s/%s: roleRef %+v, subjects %+v; want the role and %+v", kind, k.namespace, k.name, binding.RoleRef, binding.Subjects, want)
		}
	}
	// berth-controller: a ClusterRole and its lease Role; berth-agent: a
	// ClusterRole and its Secrets Role.
	if roles != 4 {
		t.Errorf("%d roles, want 4", roles)
	}
}
