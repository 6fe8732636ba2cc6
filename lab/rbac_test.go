package lab

import (
	"bytes"
	"maps"
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
	// Who each role is bound to, written out: the generated roles are
	// named for their component, like its ServiceAccount; the chart's
	// templated Secrets Role is the agents'; berth-metrics-reader is bound
	// to no one unless agent.metrics.readers names someone.
	boundTo := map[string]string{
		"berth-controller":     ControllerServiceAccount,
		"berth-agent":          AgentServiceAccount,
		"berth-agent-secrets":  AgentServiceAccount,
		"berth-metrics-reader": "",
	}
	roles := map[string]int{}
	for k := range objs {
		kind, ok := bindings[k.kind]
		if !ok {
			continue
		}
		roles[k.kind+" "+k.name]++
		sa, known := boundTo[k.name]
		if !known {
			t.Errorf("%s %s/%s: a role this test does not know", k.kind, k.namespace, k.name)
			continue
		}
		doc, ok := objs[key{kind, k.namespace, k.name}]
		if sa == "" {
			if ok {
				t.Errorf("%s %s/%s is bound; the chart binds it to no one by default", k.kind, k.namespace, k.name)
			}
			continue
		}
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
		want := rbacv1.Subject{Kind: rbacv1.ServiceAccountKind, Name: sa, Namespace: Namespace}
		if binding.RoleRef != (rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: k.kind, Name: k.name}) ||
			len(binding.Subjects) != 1 || binding.Subjects[0] != want {
			t.Errorf("%s %s/%s: roleRef %+v, subjects %+v; want the role and %+v", kind, k.namespace, k.name, binding.RoleRef, binding.Subjects, want)
		}
	}
	// berth-controller: a ClusterRole and its Role in Namespace (lease,
	// fleets); berth-agent: a ClusterRole and its Secrets Role; the metrics
	// readers' ClusterRole.
	want := map[string]int{
		"ClusterRole berth-controller": 1, "Role berth-controller": 1,
		"ClusterRole berth-agent": 1, "Role berth-agent-secrets": 1,
		"ClusterRole berth-metrics-reader": 1,
	}
	if !maps.Equal(roles, want) {
		t.Errorf("roles %v, want %v", roles, want)
	}
}
