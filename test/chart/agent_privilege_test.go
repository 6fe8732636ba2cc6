package chart_test

import (
	"slices"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
)

// agentCaps is the agent's whole capability set (test/privilege runs the
// agent with exactly this set and shows each one is needed).
var agentCaps = []string{"NET_ADMIN", "NET_RAW"}

// TestAgentPrivileges: the agent container is never privileged, in every
// install: NET_ADMIN and NET_RAW only, no privilege escalation, a
// read-only root, the runtime's seccomp profile. With the pod network a
// privileged init container (`berth-agent init`, the same image) sets the
// kernel parameters first, with the host's modules read-only; without it
// there is none.
func TestAgentPrivileges(t *testing.T) {
	for name, sets := range map[string][]string{
		"default": nil, "full stack": fullStack, "beside another CNI": beside, "only LoadBalancer": onlyLB,
		"pod network, no NetworkPolicy": {"networkPolicy.enabled=false"},
	} {
		t.Run(name, func(t *testing.T) {
			ds := mustRender(t, sets...).must(t, "DaemonSet", "berth-agent")
			a := container(t, ds)
			sc, _ := a["securityContext"].(map[string]any)
			add, _, _ := unstructured.NestedStringSlice(sc, "capabilities", "add")
			drop, _, _ := unstructured.NestedStringSlice(sc, "capabilities", "drop")
			if sc["privileged"] != false || sc["allowPrivilegeEscalation"] != false || sc["readOnlyRootFilesystem"] != true ||
				!slices.Equal(add, agentCaps) || !slices.Equal(drop, []string{"ALL"}) {
				t.Errorf("agent securityContext %v, want unprivileged, no escalation, read-only root, capabilities ALL dropped and %v added", sc, agentCaps)
			}
			if p, _, _ := unstructured.NestedString(podSpec(t, ds), "securityContext", "seccompProfile", "type"); p != "RuntimeDefault" {
				t.Errorf("agent pod seccompProfile %q, want RuntimeDefault", p)
			}
			inits, _ := podSpec(t, ds)["initContainers"].([]any)
			podNetwork := !slices.Contains(sets, "podNetwork.enabled=false")
			if !podNetwork {
				if len(inits) != 0 || slices.Contains(hostPaths(t, ds), "/lib") {
					t.Errorf("without the pod network: init containers %v, hostPaths %v; want none and no /lib", inits, hostPaths(t, ds))
				}
				return
			}
			if len(inits) != 1 {
				t.Fatalf("init containers %v, want kernel-settings alone", inits)
			}
			ic := inits[0].(map[string]any)
			if ic["image"] != a["image"] || ic["name"] != "kernel-settings" {
				t.Errorf("init container %v %v, want kernel-settings of the agent's image %v", ic["name"], ic["image"], a["image"])
			}
			netpol := "--network-policy=true"
			if slices.Contains(sets, "networkPolicy.enabled=false") {
				netpol = "--network-policy=false"
			}
			if got, want := args(ic), []string{"init", "--pod-network=true", netpol, "--modules-dir=/host/lib/modules"}; !slices.Equal(got, want) {
				t.Errorf("init args %q, want %q", got, want)
			}
			if v, _, _ := unstructured.NestedBool(ic, "securityContext", "privileged"); !v {
				t.Error("init container not privileged: it cannot write /proc/sys or load modules")
			}
			mounts, _ := ic["volumeMounts"].([]any)
			if len(mounts) != 1 || mounts[0].(map[string]any)["mountPath"] != "/host/lib" || mounts[0].(map[string]any)["readOnly"] != true {
				t.Errorf("init mounts %v, want the host's /lib read-only at /host/lib", mounts)
			}
			for _, m := range a["volumeMounts"].([]any) {
				if m.(map[string]any)["name"] == "host-lib" {
					t.Error("the agent mounts the host's /lib")
				}
			}
		})
	}
}

// TestAgentServing: probes and metrics on the node's address (HOST_IP from
// status.hostIP); metrics over HTTPS for holders of berth-metrics-reader
// by default, which grants GET /metrics and nothing else; the
// ServiceMonitor scrapes with HTTPS and a token; agent.metrics.readers
// binds the role; secure off renders neither role nor HTTPS.
func TestAgentServing(t *testing.T) {
	objs := mustRender(t, "metrics.serviceMonitor.enabled=true")
	a := container(t, objs.must(t, "DaemonSet", "berth-agent"))
	if got := fieldRefEnv(a, "HOST_IP"); got != "status.hostIP" {
		t.Errorf("agent HOST_IP from %q, want status.hostIP", got)
	}
	wantArgs(t, a, "--serve-address=$(HOST_IP)", "--metrics-bind-address=:9190", "--health-probe-bind-address=:9191", "--metrics-secure=true")
	var role rbacv1.ClusterRole
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(objs.must(t, "ClusterRole", "berth-metrics-reader").Object, &role); err != nil {
		t.Fatal(err)
	}
	if len(role.Rules) != 1 || !slices.Equal(role.Rules[0].NonResourceURLs, []string{"/metrics"}) || !slices.Equal(role.Rules[0].Verbs, []string{"get"}) ||
		len(role.Rules[0].Resources) != 0 {
		t.Errorf("berth-metrics-reader rules %+v, want get on /metrics only", role.Rules)
	}
	if objs.get("ClusterRoleBinding", "berth-metrics-reader") != nil {
		t.Error("berth-metrics-reader bound with no agent.metrics.readers")
	}
	ep := func(objs objects) map[string]any {
		eps, _, _ := unstructured.NestedSlice(objs.must(t, "ServiceMonitor", "berth-agent").Object, "spec", "endpoints")
		return eps[0].(map[string]any)
	}
	if e := ep(objs); e["scheme"] != "https" || e["bearerTokenFile"] != "/var/run/secrets/kubernetes.io/serviceaccount/token" {
		t.Errorf("agent ServiceMonitor endpoint %v, want https with the service account token", e)
	}
	if e, _, _ := unstructured.NestedSlice(objs.must(t, "ServiceMonitor", "berth-controller").Object, "spec", "endpoints"); e[0].(map[string]any)["scheme"] != nil {
		t.Errorf("controller ServiceMonitor endpoint %v changed", e[0])
	}

	objs = mustRender(t, "agent.metrics.readers[0].namespace=monitoring", "agent.metrics.readers[0].name=prometheus-k8s")
	var b rbacv1.ClusterRoleBinding
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(objs.must(t, "ClusterRoleBinding", "berth-metrics-reader").Object, &b); err != nil {
		t.Fatal(err)
	}
	want := []rbacv1.Subject{{Kind: "ServiceAccount", Name: "prometheus-k8s", Namespace: "monitoring"}}
	if b.RoleRef.Name != "berth-metrics-reader" || !slices.Equal(b.Subjects, want) {
		t.Errorf("berth-metrics-reader binding %v to %v, want %v", b.RoleRef, b.Subjects, want)
	}

	objs = mustRender(t, "agent.metrics.secure=false", "metrics.serviceMonitor.enabled=true")
	wantArgs(t, container(t, objs.must(t, "DaemonSet", "berth-agent")), "--metrics-secure=false", "--serve-address=$(HOST_IP)")
	if objs.get("ClusterRole", "berth-metrics-reader") != nil {
		t.Error("berth-metrics-reader rendered with agent.metrics.secure=false")
	}
	if e := ep(objs); e["scheme"] != nil || e["bearerTokenFile"] != nil {
		t.Errorf("agent ServiceMonitor endpoint %v with plain HTTP metrics", e)
	}
	if _, err := render(t, "agent.metrics.readers[0].name=prometheus"); err == nil {
		t.Error("a metrics reader without a namespace was accepted")
	}
}
