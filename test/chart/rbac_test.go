package chart_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
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
	// Nothing else grants anything: the generated roles, and the agents'
	// Role naming the Secrets they read (TestAgentSecretsRole).
	allowed := map[string]bool{"Role/" + agentSecretsRole: true, "RoleBinding/" + agentSecretsRole: true,
		// GET /metrics alone, for scrapers (TestAgentServing).
		"ClusterRole/berth-metrics-reader": true, "ClusterRoleBinding/berth-metrics-reader": true}
	for _, component := range []string{"controller", "agent"} {
		for _, g := range decode(t, readFile(t, filepath.Join(root, "config", "rbac", component, "role.yaml"))) {
			binding := map[string]string{"ClusterRole": "ClusterRoleBinding", "Role": "RoleBinding"}[g.GetKind()]
			allowed[g.GetKind()+"/"+g.GetName()], allowed[binding+"/"+g.GetName()] = true, true
		}
	}
	for _, k := range []string{"ClusterRole", "Role", "ClusterRoleBinding", "RoleBinding"} {
		for _, name := range objs.ofKind(k).names() {
			if !allowed[name] {
				t.Errorf("%s rendered: neither generated (config/rbac) nor the agents' Secret Role", name)
			}
		}
	}
	// The generated agent roles reach no Secret: the agents read only
	// those the chart's Role names.
	for _, g := range decode(t, readFile(t, filepath.Join(root, "config", "rbac", "agent", "role.yaml"))) {
		var role rbacv1.ClusterRole
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(g.Object, &role); err != nil {
			t.Fatal(err)
		}
		for _, r := range role.Rules {
			if slices.Contains(r.Resources, "secrets") || slices.Contains(r.Resources, "*") {
				t.Errorf("the agent's generated %s %s reaches Secrets: %v", g.GetKind(), g.GetName(), r)
			}
		}
	}
}

// agentSecretsRole is the chart's Role (templates/agent-secrets.yaml) that
// names the Secrets of the release namespace the agents may read.
const agentSecretsRole = "berth-agent-secrets"

// TestAgentSecretsRole: the agents may get, by name, exactly the heartbeat
// key, the password Secrets of the chart's BGPPeers and
// agent.extraSecretNames; with no name there is no Role at all (a rule
// without resourceNames would allow every Secret, the xDS CA's among them).
func TestAgentSecretsRole(t *testing.T) {
	peer := func(i int, name, secret string) []string {
		p := fmt.Sprintf("loadBalancer.bgpPeers[%d].", i)
		sets := []string{p + "name=" + name, p + "spec.address=192.0.2.1", p + "spec.peerASN=64512", p + "spec.localASN=64513"}
		if secret != "" {
			sets = append(sets, p+"spec.passwordSecret.name="+secret, p+"spec.passwordSecret.key=password")
		}
		return sets
	}
	for _, c := range []struct {
		name string
		sets []string
		want []string // nil: no Role
	}{
		{name: "defaults: the heartbeat key", want: []string{"berth-l2-key"}},
		{name: "peers' passwords, extra names, once each, sorted",
			sets: slices.Concat(peer(0, "tor-b", "tor-b-md5"), peer(1, "tor-a", "shared-md5"), peer(2, "tor-c", "shared-md5"), peer(3, "plain", ""),
				[]string{"agent.extraSecretNames={outside-md5,tor-b-md5}"}),
			want: []string{"berth-l2-key", "outside-md5", "shared-md5", "tor-b-md5"}},
		{name: "a key Secret of the operator's", sets: []string{"loadBalancer.l2.keySecret.create=false", "loadBalancer.l2.keySecret.name=my-key"},
			want: []string{"my-key"}},
		{name: "no layer 2, no password: no Role", sets: slices.Concat([]string{"loadBalancer.l2.enabled=false"}, peer(0, "plain", ""))},
		{name: "BGP off: its peers' Secrets are not read", sets: slices.Concat([]string{"loadBalancer.l2.enabled=false", "loadBalancer.bgp.enabled=false"}, peer(0, "tor", "tor-md5"))},
		{name: "BGP off, extra names kept", sets: []string{"loadBalancer.l2.enabled=false", "loadBalancer.bgp.enabled=false", "agent.extraSecretNames={x}"},
			want: []string{"x"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			objs := mustRender(t, c.sets...)
			role, binding := objs.get("Role", agentSecretsRole), objs.get("RoleBinding", agentSecretsRole)
			if c.want == nil {
				if role != nil || binding != nil {
					t.Fatalf("rendered %v, want no Role %s", objs.names(), agentSecretsRole)
				}
				return
			}
			if role == nil || binding == nil {
				t.Fatalf("no Role and RoleBinding %s: rendered %v", agentSecretsRole, objs.names())
			}
			var got rbacv1.Role
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(role.Object, &got); err != nil {
				t.Fatal(err)
			}
			want := []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"secrets"}, ResourceNames: c.want, Verbs: []string{"get"}}}
			if d := cmp.Diff(want, got.Rules); d != "" || got.Namespace != namespace {
				t.Errorf("Role %s/%s rules (-want +got):\n%s", got.Namespace, got.Name, d)
			}
			var b rbacv1.RoleBinding
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(binding.Object, &b); err != nil {
				t.Fatal(err)
			}
			wantSubjects := []rbacv1.Subject{{Kind: "ServiceAccount", Name: "berth-agent", Namespace: namespace}}
			if b.RoleRef.Kind != "Role" || b.RoleRef.Name != agentSecretsRole || !slices.Equal(b.Subjects, wantSubjects) || b.Namespace != namespace {
				t.Errorf("RoleBinding %s/%s binds %v to %v", b.Namespace, b.Name, b.RoleRef, b.Subjects)
			}
		})
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

// TestAdmissionPolicies: the policies on the agents' status writes come
// with the agent (the BGPPeer one with the BGP speaker), each bound, and
// name the agent of the release's namespace.
func TestAdmissionPolicies(t *testing.T) {
	for _, c := range []struct {
		name string
		sets []string
		want []string
	}{
		{name: "defaults", want: []string{"berth-agent-bgppeer-status", "berth-agent-service-status"}},
		{name: "no BGP", sets: []string{"loadBalancer.bgp.enabled=false"}, want: []string{"berth-agent-service-status"}},
		{name: "no agent", sets: []string{"podNetwork.enabled=false", "loadBalancer.enabled=false", "gateway.enabled=false", "ingress.enabled=false"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			objs := mustRender(t, c.sets...)
			var policies, bindings []string
			for _, p := range objs.ofKind("ValidatingAdmissionPolicy") {
				policies = append(policies, p.GetName())
				conds, _, _ := unstructured.NestedSlice(p.Object, "spec", "matchConditions")
				if len(conds) != 1 || conds[0].(map[string]any)["expression"] != `request.userInfo.username == "system:serviceaccount:berth-system:berth-agent"` {
					t.Errorf("policy %s matches %v, want the berth-agent ServiceAccount of %s alone", p.GetName(), conds, namespace)
				}
			}
			for _, b := range objs.ofKind("ValidatingAdmissionPolicyBinding") {
				name, _, _ := unstructured.NestedString(b.Object, "spec", "policyName")
				actions, _, _ := unstructured.NestedStringSlice(b.Object, "spec", "validationActions")
				if !slices.Equal(actions, []string{"Deny"}) {
					t.Errorf("binding %s: validationActions %v, want [Deny]", b.GetName(), actions)
				}
				bindings = append(bindings, name)
			}
			slices.Sort(policies)
			slices.Sort(bindings)
			if !slices.Equal(policies, c.want) || !slices.Equal(bindings, c.want) {
				t.Errorf("policies %v bound %v, want %v", policies, bindings, c.want)
			}
		})
	}
}
