package lab

import (
	"bytes"
	"fmt"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/berthnet/berth/config"
)

// The lab runs berth-controller and every berth-agent as the chart's
// ServiceAccounts with the chart's roles: the generated ClusterRoles and
// Roles of config/rbac (which the chart renders verbatim), bound to the
// ServiceAccounts berth-controller and berth-agent in berth-system, as the
// chart binds them. The components authenticate with client certificates
// whose subject is the ServiceAccount's user name (CN) and groups (O), so
// the API server authorizes them exactly as it would the pods' tokens, and
// every lab scenario runs with the release's permissions and no more.

// Namespace is Berth's namespace: the ServiceAccounts, the controller's
// leader lease and xDS CA, the Envoy fleets, the heartbeat key and BGP
// password Secrets the agents read by name.
const Namespace = "berth-system"

// The chart's ServiceAccounts, one per component.
const (
	ControllerServiceAccount = "berth-controller"
	AgentServiceAccount      = "berth-agent"
)

// ServiceAccountUser is the user name a ServiceAccount of Namespace
// authenticates as (what a token of it says).
func ServiceAccountUser(sa string) string { return "system:serviceaccount:" + Namespace + ":" + sa }

// ServiceAccountGroups are the groups a ServiceAccount of Namespace is in.
func ServiceAccountGroups() []string {
	return []string{"system:serviceaccounts", "system:serviceaccounts:" + Namespace}
}

// RBACManifests returns the ServiceAccounts, the generated roles and one
// binding per role to its component's ServiceAccount: the RBAC objects the
// chart renders into berth-system (test/e2e compares them).
func RBACManifests() ([]byte, error) {
	docs := [][]byte{}
	for _, c := range []struct {
		sa    string
		roles []byte
	}{{ControllerServiceAccount, config.ControllerRole}, {AgentServiceAccount, config.AgentRole}} {
		b, err := yaml.Marshal(map[string]any{
			"apiVersion": "v1", "kind": "ServiceAccount",
			"metadata": map[string]any{"name": c.sa, "namespace": Namespace},
		})
		if err != nil {
			return nil, err
		}
		docs = append(docs, b, c.roles)
		bindings, err := roleBindings(c.roles, c.sa)
		if err != nil {
			return nil, err
		}
		docs = append(docs, bindings...)
	}
	templated, err := chartTemplatedRBAC()
	if err != nil {
		return nil, err
	}
	docs = append(docs, templated...)
	return bytes.Join(docs, []byte("\n---\n")), nil
}

// AgentSecretNames are the Secrets of Namespace the agents may read, by
// name: what the chart's Role berth-agent-secrets lists with the lab's
// values (the heartbeat key Secret under its default name; the lab's
// BGPPeers have no password).
var AgentSecretNames = []string{"berth-l2-key"}

// chartTemplatedRBAC returns the RBAC objects the chart renders from its
// values rather than from config/rbac (charts/berth/templates): the agents'
// Role berth-agent-secrets (get by name only) with its binding, and the
// ClusterRole berth-metrics-reader, which the chart binds to no one unless
// agent.metrics.readers names someone.
func chartTemplatedRBAC() ([][]byte, error) {
	objs := []any{
		rbacv1.Role{
			TypeMeta:   metav1.TypeMeta{APIVersion: rbacv1.SchemeGroupVersion.String(), Kind: "Role"},
			ObjectMeta: metav1.ObjectMeta{Name: "berth-agent-secrets", Namespace: Namespace},
			Rules: []rbacv1.PolicyRule{{
				APIGroups: []string{""}, Resources: []string{"secrets"},
				ResourceNames: AgentSecretNames, Verbs: []string{"get"},
			}},
		},
		rbacv1.RoleBinding{
			TypeMeta:   metav1.TypeMeta{APIVersion: rbacv1.SchemeGroupVersion.String(), Kind: "RoleBinding"},
			ObjectMeta: metav1.ObjectMeta{Name: "berth-agent-secrets", Namespace: Namespace},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "berth-agent-secrets"},
			Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: AgentServiceAccount, Namespace: Namespace}},
		},
		rbacv1.ClusterRole{
			TypeMeta:   metav1.TypeMeta{APIVersion: rbacv1.SchemeGroupVersion.String(), Kind: "ClusterRole"},
			ObjectMeta: metav1.ObjectMeta{Name: "berth-metrics-reader"},
			Rules:      []rbacv1.PolicyRule{{NonResourceURLs: []string{"/metrics"}, Verbs: []string{"get"}}},
		},
	}
	var out [][]byte
	for _, o := range objs {
		b, err := yaml.Marshal(o)
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return out, nil
}

// roleBindings binds every ClusterRole and Role of a generated role file to
// the ServiceAccount sa, each binding named like its role.
func roleBindings(roles []byte, sa string) ([][]byte, error) {
	subjects := []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: sa, Namespace: Namespace}}
	var out [][]byte
	for _, doc := range bytes.Split(roles, []byte("\n---\n")) {
		var obj struct {
			metav1.TypeMeta   `json:",inline"`
			metav1.ObjectMeta `json:"metadata"`
		}
		if err := yaml.Unmarshal(doc, &obj); err != nil {
			return nil, fmt.Errorf("generated roles of %s: %w", sa, err)
		}
		var binding any
		switch obj.Kind {
		case "ClusterRole":
			binding = rbacv1.ClusterRoleBinding{
				TypeMeta:   metav1.TypeMeta{APIVersion: rbacv1.SchemeGroupVersion.String(), Kind: "ClusterRoleBinding"},
				ObjectMeta: metav1.ObjectMeta{Name: obj.Name},
				RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: obj.Name},
				Subjects:   subjects,
			}
		case "Role":
			binding = rbacv1.RoleBinding{
				TypeMeta:   metav1.TypeMeta{APIVersion: rbacv1.SchemeGroupVersion.String(), Kind: "RoleBinding"},
				ObjectMeta: metav1.ObjectMeta{Name: obj.Name, Namespace: obj.Namespace},
				RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: obj.Name},
				Subjects:   subjects,
			}
		case "":
			continue
		default:
			return nil, fmt.Errorf("generated roles of %s: unexpected kind %s", sa, obj.Kind)
		}
		b, err := yaml.Marshal(binding)
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return out, nil
}
