package chart_test

import (
	"encoding/base64"
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// The full stack (kubeadm without kube-proxy) and the MetalLB-style
// install, as docs/install.md gives them.
var (
	fullStack   = []string{"serviceProxy.enabled=true", "kubernetesAPI.host=192.0.2.10"}
	beside      = []string{"podNetwork.enabled=false"}
	onlyLB      = []string{"podNetwork.enabled=false", "gateway.enabled=false", "ingress.enabled=false"}
	withObjects = []string{
		"loadBalancer.ipPools[0].name=lan", "loadBalancer.ipPools[0].spec.addresses[0]=192.0.2.240/28",
		"loadBalancer.ipPools[0].spec.addresses[1]=2001:db8::100-2001:db8::1ff",
		"loadBalancer.l2Announcements[0].name=lan", "loadBalancer.l2Announcements[0].spec.ipPools[0]=lan",
		"loadBalancer.bgpPeers[0].name=tor", "loadBalancer.bgpPeers[0].labels.rack=a",
		"loadBalancer.bgpPeers[0].spec.address=192.0.2.1", "loadBalancer.bgpPeers[0].spec.peerASN=64512",
		"loadBalancer.bgpPeers[0].spec.localASN=64513",
		"loadBalancer.bgpAnnouncements[0].name=all", "loadBalancer.bgpAnnouncements[0].spec.ipPools[0]=lan",
	}
)

func TestLint(t *testing.T) {
	for name, sets := range map[string][]string{
		"default": nil, "full stack": fullStack, "beside another CNI": beside, "only LoadBalancer": onlyLB,
		"objects": withObjects, "service monitor": {"metrics.serviceMonitor.enabled=true"},
	} {
		args := append([]string{"lint", "--strict", chartDir(t), "--namespace", namespace, "--kube-version", kubeVersion}, setArgs(sets)...)
		if out, err := helm(t, args...); err != nil {
			t.Errorf("%s: %v\n%s", name, err, out)
		}
	}
}

func TestDefaults(t *testing.T) {
	objs := mustRender(t)

	ctl := objs.must(t, "Deployment", "berth-controller")
	if r, _, _ := unstructured.NestedInt64(ctl.Object, "spec", "replicas"); r != 2 {
		t.Errorf("controller replicas %d, want 2", r)
	}
	c := container(t, ctl)
	wantArgs(t, c, "--leader-elect=true", "--gateway=true", "--xds-bind-address=:18000",
		"--xds-address=berth-xds.berth-system.svc:18000", "--serve-unclassed-services=true",
		"--metrics-bind-address=:9090", "--health-probe-bind-address=:9091")
	if got := fieldRefEnv(c, "POD_NAMESPACE"); got != "metadata.namespace" {
		t.Errorf("controller POD_NAMESPACE from %q, want the downward API's metadata.namespace", got)
	}
	if p := probePath(c, "livenessProbe"); p != "/healthz" {
		t.Errorf("controller liveness probe %q, want /healthz", p)
	}
	if p := probePath(c, "readinessProbe"); p != "/readyz" {
		t.Errorf("controller readiness probe %q, want /readyz", p)
	}
	if got := fieldRefEnv(c, "POD_NAME"); got != "metadata.name" {
		t.Errorf("controller POD_NAME from %q, want metadata.name (the leader labels its own pod)", got)
	}
	// Every replica is ready (the xDS Service selects the leader by label):
	// an ordinary rollout and a budget.
	if mu, _, _ := unstructured.NestedFieldNoCopy(ctl.Object, "spec", "strategy", "rollingUpdate", "maxUnavailable"); mu != int64(0) {
		t.Errorf("controller maxUnavailable %v, want 0", mu)
	}
	if objs.get("PodDisruptionBudget", "berth-controller") == nil {
		t.Error("no PodDisruptionBudget for the controller")
	}
	if _, ok := requests(c)["memory"]; !ok {
		t.Error("controller has no memory request")
	}

	xds := objs.must(t, "Service", "berth-xds")
	ports, _, _ := unstructured.NestedSlice(xds.Object, "spec", "ports")
	if len(ports) != 1 || ports[0].(map[string]any)["port"] != int64(18000) || ports[0].(map[string]any)["targetPort"] != "xds" {
		t.Errorf("berth-xds ports %v, want 18000 to the controller's xds port", ports)
	}
	// The xDS Service selects the controller pod the leader labels.
	sel, _, _ := unstructured.NestedStringMap(xds.Object, "spec", "selector")
	if sel["berth.dev/xds-leader"] != "true" {
		t.Errorf("berth-xds selector %v, want berth.dev/xds-leader=true", sel)
	}
	delete(sel, "berth.dev/xds-leader")
	_ = unstructured.SetNestedStringMap(xds.Object, sel, "spec", "selector")
	if !selects(xds, ctl) {
		t.Error("berth-xds does not select the controller's pods")
	}
	if !hasPort(c, "xds", 18000) {
		t.Error("controller has no xds container port 18000")
	}

	ds := objs.must(t, "DaemonSet", "berth-agent")
	spec := podSpec(t, ds)
	if spec["hostNetwork"] != true || spec["priorityClassName"] != "system-node-critical" {
		t.Errorf("agent hostNetwork %v, priorityClassName %v; want true, system-node-critical", spec["hostNetwork"], spec["priorityClassName"])
	}
	if tol, _ := spec["tolerations"].([]any); len(tol) != 1 || tol[0].(map[string]any)["operator"] != "Exists" || len(tol[0].(map[string]any)) != 1 {
		t.Errorf("agent tolerations %v, want one that tolerates every taint", tol)
	}
	a := container(t, ds)
	wantArgs(t, a, "--pod-network=true", "--pod-network-mode=auto", "--cni-conf-dir=/etc/cni/net.d",
		"--cni-bin-dir=/opt/cni/bin", "--network-policy=true", "--service-proxy=false", "--l2-announce=true",
		"--l2-key-file=/etc/berth/l2/key", "--bgp=true", "--serve-unclassed-services=true")
	if got := fieldRefEnv(a, "NODE_NAME"); got != "spec.nodeName" {
		t.Errorf("agent NODE_NAME from %q, want spec.nodeName", got)
	}
	if got := hostPaths(t, ds); !slices.Equal(got, []string{"/etc/cni/net.d", "/opt/cni/bin", "/lib"}) {
		t.Errorf("agent hostPaths %v, want the CNI folders and /lib (the init container's modules) only", got)
	}
	if p := probePath(a, "readinessProbe"); p != "/readyz" {
		t.Errorf("agent readiness probe %q, want /readyz", p)
	}
	key := objs.must(t, "Secret", "berth-l2-key")
	raw, _, _ := unstructured.NestedString(key.Object, "data", "key")
	if b, err := base64.StdEncoding.DecodeString(raw); err != nil || len(b) < 16 {
		t.Errorf("L2 key %q: %v, %d bytes; want at least 16", raw, err, len(b))
	}
	if name := secretVolume(t, ds); name != "berth-l2-key" {
		t.Errorf("agent mounts Secret %q, want berth-l2-key", name)
	}

	gc := objs.must(t, "GatewayClass", "berth")
	if v, _, _ := unstructured.NestedString(gc.Object, "spec", "controllerName"); v != "berth.dev/gateway" {
		t.Errorf("GatewayClass controllerName %q", v)
	}
	ic := objs.must(t, "IngressClass", "berth")
	if v, _, _ := unstructured.NestedString(ic.Object, "spec", "controller"); v != "berth.dev/ingress" {
		t.Errorf("IngressClass controller %q", v)
	}
	for _, n := range []string{"berth-controller-metrics", "berth-agent-metrics"} {
		objs.must(t, "Service", n)
	}
	if sa := objs.ofKind("ServiceAccount"); len(sa) != 2 {
		t.Errorf("ServiceAccounts %v, want berth-controller and berth-agent", sa.names())
	}
	for _, k := range []string{"IPPool", "L2Announcement", "BGPPeer", "BGPAnnouncement", "ServiceMonitor"} {
		if o := objs.ofKind(k); len(o) > 0 {
			t.Errorf("%s rendered by default: %v", k, o.names())
		}
	}
}

// Each switch changes what it says and nothing it should not.
func TestSwitches(t *testing.T) {
	t.Run("podNetwork off", func(t *testing.T) {
		objs := mustRender(t, "podNetwork.enabled=false")
		ds := objs.must(t, "DaemonSet", "berth-agent")
		a := container(t, ds)
		wantArgs(t, a, "--pod-network=false", "--network-policy=false", "--l2-announce=true", "--bgp=true")
		noArgPrefix(t, a, "--pod-network-mode", "--cni-conf-dir", "--cni-bin-dir")
		if hp := hostPaths(t, ds); len(hp) > 0 {
			t.Errorf("hostPaths %v without the pod network", hp)
		}
		sc, _ := a["securityContext"].(map[string]any)
		caps, _, _ := unstructured.NestedStringSlice(sc, "capabilities", "add")
		drop, _, _ := unstructured.NestedStringSlice(sc, "capabilities", "drop")
		if sc["privileged"] != false || !slices.Equal(caps, []string{"NET_ADMIN", "NET_RAW"}) || !slices.Equal(drop, []string{"ALL"}) {
			t.Errorf("agent securityContext %v, want unprivileged with NET_ADMIN and NET_RAW only", sc)
		}
	})
	// With the pod network the agent is not privileged either: its init
	// container is (TestAgentPrivileges).
	t.Run("podNetwork mode bgp", func(t *testing.T) {
		a := container(t, mustRender(t, "podNetwork.mode=bgp", "podNetwork.mtu=1400").must(t, "DaemonSet", "berth-agent"))
		wantArgs(t, a, "--pod-network-mode=bgp", "--mtu=1400", "--bgp=true")
	})
	t.Run("gateway off, ingress on", func(t *testing.T) {
		objs := mustRender(t, "gateway.enabled=false")
		wantArgs(t, container(t, objs.must(t, "Deployment", "berth-controller")), "--gateway=true")
		objs.must(t, "Service", "berth-xds")
		objs.must(t, "IngressClass", "berth")
		if objs.get("GatewayClass", "berth") != nil {
			t.Error("GatewayClass rendered with gateway off")
		}
	})
	t.Run("ingress off, gateway on", func(t *testing.T) {
		objs := mustRender(t, "ingress.enabled=false")
		objs.must(t, "GatewayClass", "berth")
		if objs.get("IngressClass", "berth") != nil {
			t.Error("IngressClass rendered with ingress off")
		}
	})
	t.Run("gateway and ingress off", func(t *testing.T) {
		objs := mustRender(t, "gateway.enabled=false", "ingress.enabled=false")
		ctl := objs.must(t, "Deployment", "berth-controller")
		c := container(t, ctl)
		wantArgs(t, c, "--gateway=false")
		noArgPrefix(t, c, "--xds-", "--envoy-")
		if hasPort(c, "xds", 18000) {
			t.Error("xds container port without gateway")
		}
		for _, o := range []struct{ kind, name string }{{"Service", "berth-xds"}, {"GatewayClass", "berth"}, {"IngressClass", "berth"}} {
			if objs.get(o.kind, o.name) != nil {
				t.Errorf("%s %s rendered with gateway and ingress off", o.kind, o.name)
			}
		}
		// Every replica is ready now: an ordinary rollout and a budget.
		if mu, _, _ := unstructured.NestedFieldNoCopy(ctl.Object, "spec", "strategy", "rollingUpdate", "maxUnavailable"); mu != int64(0) {
			t.Errorf("controller maxUnavailable %v, want 0", mu)
		}
		pdb := objs.must(t, "PodDisruptionBudget", "berth-controller")
		if mu, _, _ := unstructured.NestedFieldNoCopy(pdb.Object, "spec", "maxUnavailable"); mu != int64(1) || !selects(pdb, ctl) {
			t.Errorf("PodDisruptionBudget maxUnavailable %v or selector wrong", mu)
		}
	})
	t.Run("loadBalancer off", func(t *testing.T) {
		objs := mustRender(t, "loadBalancer.enabled=false", "gateway.enabled=false", "ingress.enabled=false")
		wantArgs(t, container(t, objs.must(t, "Deployment", "berth-controller")), "--serve-unclassed-services=false")
		a := container(t, objs.must(t, "DaemonSet", "berth-agent"))
		wantArgs(t, a, "--serve-unclassed-services=false", "--l2-announce=false", "--bgp=false", "--pod-network=true")
		noArgPrefix(t, a, "--l2-key-file")
		if objs.get("Secret", "berth-l2-key") != nil {
			t.Error("L2 key Secret without layer-2 announcement")
		}
	})
	t.Run("serviceProxy on", func(t *testing.T) {
		a := container(t, mustRender(t, append(fullStack, "kubernetesAPI.port=8443", "serviceProxy.nodePortAddresses[0]=192.0.2.0/24")...).must(t, "DaemonSet", "berth-agent"))
		wantArgs(t, a, "--service-proxy=true", "--nodeport-addresses=192.0.2.0/24", "--pod-network=true")
		if h, p := valueEnv(a, "KUBERNETES_SERVICE_HOST"), valueEnv(a, "KUBERNETES_SERVICE_PORT"); h != "192.0.2.10" || p != "8443" {
			t.Errorf("agent reaches the API server at %q:%q, want 192.0.2.10:8443", h, p)
		}
	})
	t.Run("externalIPs allowed in a range", func(t *testing.T) {
		a := container(t, mustRender(t, append(fullStack, "serviceProxy.externalIPCIDRs[0]=192.0.2.0/24", "serviceProxy.externalIPCIDRs[1]=2001:db8::/64")...).must(t, "DaemonSet", "berth-agent"))
		wantArgs(t, a, "--external-ip-cidrs=192.0.2.0/24,2001:db8::/64")
		// By default none are served.
		noArgPrefix(t, container(t, mustRender(t, fullStack...).must(t, "DaemonSet", "berth-agent")), "--external-ip-cidrs")
	})
	t.Run("networkPolicy off", func(t *testing.T) {
		wantArgs(t, container(t, mustRender(t, "networkPolicy.enabled=false").must(t, "DaemonSet", "berth-agent")), "--network-policy=false", "--pod-network=true")
	})
	t.Run("nothing for the agent", func(t *testing.T) {
		objs := mustRender(t, append(onlyLB, "loadBalancer.l2.enabled=false", "loadBalancer.bgp.enabled=false")...)
		for _, k := range []string{"DaemonSet", "Secret"} {
			if o := objs.ofKind(k); len(o) > 0 {
				t.Errorf("%v rendered though the agent has nothing to do", o.names())
			}
		}
		if objs.get("ClusterRole", "berth-agent") != nil || objs.get("ServiceAccount", "berth-agent") != nil {
			t.Error("agent RBAC rendered without the agent")
		}
	})
	t.Run("existing key Secret", func(t *testing.T) {
		objs := mustRender(t, "loadBalancer.l2.keySecret.create=false", "loadBalancer.l2.keySecret.name=my-key", "loadBalancer.l2.keySecret.key=hmac")
		ds := objs.must(t, "DaemonSet", "berth-agent")
		wantArgs(t, container(t, ds), "--l2-key-file=/etc/berth/l2/hmac")
		if name := secretVolume(t, ds); name != "my-key" {
			t.Errorf("agent mounts Secret %q, want my-key", name)
		}
		if len(objs.ofKind("Secret")) > 0 {
			t.Error("chart made a key Secret though one was given")
		}
	})
	t.Run("objects from values", func(t *testing.T) {
		objs := mustRender(t, withObjects...)
		pool := objs.must(t, "IPPool", "lan")
		if a, _, _ := unstructured.NestedStringSlice(pool.Object, "spec", "addresses"); !slices.Equal(a, []string{"192.0.2.240/28", "2001:db8::100-2001:db8::1ff"}) {
			t.Errorf("IPPool addresses %v", a)
		}
		objs.must(t, "L2Announcement", "lan")
		objs.must(t, "BGPAnnouncement", "all")
		peer := objs.must(t, "BGPPeer", "tor")
		if peer.GetLabels()["rack"] != "a" {
			t.Errorf("BGPPeer labels %v, want rack=a among them", peer.GetLabels())
		}
		if asn, _, _ := unstructured.NestedInt64(peer.Object, "spec", "peerASN"); asn != 64512 {
			t.Errorf("BGPPeer peerASN %d", asn)
		}
	})
	t.Run("service monitors", func(t *testing.T) {
		objs := mustRender(t, "metrics.serviceMonitor.enabled=true", "metrics.serviceMonitor.labels.release=prom")
		for _, c := range []string{"controller", "agent"} {
			sm := objs.must(t, "ServiceMonitor", "berth-"+c)
			svc := objs.must(t, "Service", "berth-"+c+"-metrics")
			sel, _, _ := unstructured.NestedStringMap(sm.Object, "spec", "selector", "matchLabels")
			if !subset(sel, svc.GetLabels()) || sm.GetLabels()["release"] != "prom" {
				t.Errorf("ServiceMonitor berth-%s selector %v does not pick its metrics Service %v", c, sel, svc.GetLabels())
			}
			if xds := objs.get("Service", "berth-xds"); c == "controller" && subset(sel, xds.GetLabels()) {
				t.Error("controller ServiceMonitor selects berth-xds too")
			}
		}
	})
}

// Bad values stop `helm template` at the schema (or, across values, at a
// check in the templates), saying where and what.
func TestBadValues(t *testing.T) {
	for _, tc := range []struct {
		name string
		sets []string
		want []string
	}{
		{"CIDR prefix too long", []string{"loadBalancer.ipPools[0].name=p", "loadBalancer.ipPools[0].spec.addresses[0]=192.0.2.0/33"},
			[]string{"/loadBalancer/ipPools/0/spec/addresses/0", "'192.0.2.0/33' does not match"}},
		{"not an address", []string{"loadBalancer.ipPools[0].name=p", "loadBalancer.ipPools[0].spec.addresses[0]=192.0.2.300-192.0.2.310"},
			[]string{"/loadBalancer/ipPools/0/spec/addresses/0", "'192.0.2.300-192.0.2.310' does not match"}},
		{"range of two families", []string{"loadBalancer.ipPools[0].name=p", "loadBalancer.ipPools[0].spec.addresses[0]=192.0.2.1-2001:db8::1"},
			[]string{"/loadBalancer/ipPools/0/spec/addresses/0", "does not match"}},
		{"IPv6 CIDR prefix too long", []string{"loadBalancer.ipPools[0].name=p", "loadBalancer.ipPools[0].spec.addresses[0]=2001:db8::/129"},
			[]string{"/loadBalancer/ipPools/0/spec/addresses/0", "'2001:db8::/129' does not match"}},
		{"pool without addresses", []string{"loadBalancer.ipPools[0].name=p", "loadBalancer.ipPools[0].spec.autoAssign=false"},
			[]string{"/loadBalancer/ipPools/0/spec", "missing property 'addresses'"}},
		{"pool name", []string{"loadBalancer.ipPools[0].name=LAN_1", "loadBalancer.ipPools[0].spec.addresses[0]=192.0.2.0/24"},
			[]string{"/loadBalancer/ipPools/0/name", "'LAN_1' does not match"}},
		{"cluster CIDR", []string{"loadBalancer.clusterCIDRs[0]=10.244.0.0"}, []string{"/loadBalancer/clusterCIDRs/0", "does not match"}},
		{"BGP peer address", []string{"loadBalancer.bgpPeers[0].name=r", "loadBalancer.bgpPeers[0].spec.address=router1",
			"loadBalancer.bgpPeers[0].spec.peerASN=1", "loadBalancer.bgpPeers[0].spec.localASN=2"}, []string{"/loadBalancer/bgpPeers/0/spec/address", "router1"}},
		{"unknown pod network mode", []string{"podNetwork.mode=flat"}, []string{"/podNetwork/mode", "'routed', 'vxlan', 'auto', 'bgp'"}},
		{"negative replicas", []string{"controller.replicas=-1"}, []string{"/controller/replicas", "minimum: got -1, want 1"}},
		{"externalIPs not a CIDR", []string{"serviceProxy.externalIPCIDRs[0]=192.0.2.1"}, []string{"/serviceProxy/externalIPCIDRs/0"}},
		{"pod MTU too small", []string{"podNetwork.mtu=100"}, []string{"/podNetwork/mtu"}},
		{"pod MTU negative", []string{"podNetwork.mtu=-1"}, []string{"/podNetwork/mtu"}},
		{"port out of range", []string{"loadBalancer.l2.heartbeatPort=70000"}, []string{"/loadBalancer/l2/heartbeatPort", "maximum"}},
		{"misspelt switch", []string{"podnetwork.enabled=false"}, []string{"additional properties 'podnetwork' not allowed"}},
		{"switch not a boolean", []string{"gateway.enabled=maybe"}, []string{"/gateway/enabled", "want boolean"}},
		{"service proxy without API host", []string{"serviceProxy.enabled=true"}, []string{"set kubernetesAPI.host"}},
		{"gateway without load balancer", []string{"loadBalancer.enabled=false"}, []string{"need loadBalancer.enabled"}},
		{"pools without load balancer", []string{"loadBalancer.enabled=false", "gateway.enabled=false", "ingress.enabled=false",
			"loadBalancer.ipPools[0].name=p", "loadBalancer.ipPools[0].spec.addresses[0]=192.0.2.0/24"}, []string{"loadBalancer.enabled is false"}},
		{"pod network over BGP without BGP", []string{"podNetwork.mode=bgp", "loadBalancer.bgp.enabled=false"}, []string{"set loadBalancer.bgp.enabled=true"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := render(t, tc.sets...)
			if err == nil {
				t.Fatalf("helm template accepted %v", tc.sets)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not say %q:\n%v", w, err)
				}
			}
		})
	}
}

func podSpec(t testing.TB, o *unstructured.Unstructured) map[string]any {
	t.Helper()
	spec, ok, _ := unstructured.NestedMap(o.Object, "spec", "template", "spec")
	if !ok {
		t.Fatalf("%s %s has no pod template", o.GetKind(), o.GetName())
	}
	return spec
}

// container is the pod template's only container.
func container(t testing.TB, o *unstructured.Unstructured) map[string]any {
	t.Helper()
	cs, _ := podSpec(t, o)["containers"].([]any)
	if len(cs) != 1 {
		t.Fatalf("%s %s has %d containers, want 1", o.GetKind(), o.GetName(), len(cs))
	}
	return cs[0].(map[string]any)
}

func args(c map[string]any) []string {
	s, _, _ := unstructured.NestedStringSlice(c, "args")
	return s
}

func wantArgs(t testing.TB, c map[string]any, want ...string) {
	t.Helper()
	got := args(c)
	for _, w := range want {
		if !slices.Contains(got, w) {
			t.Errorf("%s args lack %s: %v", c["name"], w, got)
		}
	}
}

func noArgPrefix(t testing.TB, c map[string]any, prefixes ...string) {
	t.Helper()
	for _, a := range args(c) {
		for _, p := range prefixes {
			if strings.HasPrefix(a, p) {
				t.Errorf("%s has %s", c["name"], a)
			}
		}
	}
}

func env(c map[string]any, name string) map[string]any {
	es, _ := c["env"].([]any)
	for _, e := range es {
		if m := e.(map[string]any); m["name"] == name {
			return m
		}
	}
	return nil
}

func fieldRefEnv(c map[string]any, name string) string {
	s, _, _ := unstructured.NestedString(env(c, name), "valueFrom", "fieldRef", "fieldPath")
	return s
}

func valueEnv(c map[string]any, name string) string {
	s, _ := env(c, name)["value"].(string)
	return s
}

func probePath(c map[string]any, probe string) string {
	s, _, _ := unstructured.NestedString(c, probe, "httpGet", "path")
	return s
}

func requests(c map[string]any) map[string]any {
	r, _, _ := unstructured.NestedMap(c, "resources", "requests")
	return r
}

func hasPort(c map[string]any, name string, port int64) bool {
	ps, _ := c["ports"].([]any)
	for _, p := range ps {
		if m := p.(map[string]any); m["name"] == name && m["containerPort"] == port {
			return true
		}
	}
	return false
}

func hostPaths(t testing.TB, o *unstructured.Unstructured) []string {
	t.Helper()
	var out []string
	vs, _ := podSpec(t, o)["volumes"].([]any)
	for _, v := range vs {
		if p, ok, _ := unstructured.NestedString(v.(map[string]any), "hostPath", "path"); ok {
			out = append(out, p)
		}
	}
	return out
}

func secretVolume(t testing.TB, o *unstructured.Unstructured) string {
	t.Helper()
	vs, _ := podSpec(t, o)["volumes"].([]any)
	for _, v := range vs {
		if s, ok, _ := unstructured.NestedString(v.(map[string]any), "secret", "secretName"); ok {
			return s
		}
	}
	return ""
}

// selects reports whether a Service's or budget's selector picks the pods
// of a workload.
func selects(sel, workload *unstructured.Unstructured) bool {
	m, ok, _ := unstructured.NestedStringMap(sel.Object, "spec", "selector")
	if !ok || len(m) == 0 {
		m, _, _ = unstructured.NestedStringMap(sel.Object, "spec", "selector", "matchLabels")
	}
	labels, _, _ := unstructured.NestedStringMap(workload.Object, "spec", "template", "metadata", "labels")
	return len(m) > 0 && subset(m, labels)
}

func subset(sel, labels map[string]string) bool {
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return len(sel) > 0
}

// The controller writes fleets only in the release's namespace (issue 19
// item 8): its ClusterRole creates, updates and patches nothing but status
// subresources and events, and deletes only the kinds of the previous
// release's fleets (their migration); its Role in the release's namespace
// writes the fleets' kinds. Expected verbs written by hand.
func TestControllerWritesOnlyInReleaseNamespace(t *testing.T) {
	objs := mustRender(t)
	writes := map[string]bool{"create": true, "update": true, "patch": true, "delete": true, "deletecollection": true, "*": true}
	migration := map[string]bool{"secrets": true, "configmaps": true, "serviceaccounts": true, "services": true, "deployments": true}
	rules := func(o *unstructured.Unstructured) []map[string]any {
		raw, _, _ := unstructured.NestedSlice(o.Object, "rules")
		var out []map[string]any
		for _, r := range raw {
			out = append(out, r.(map[string]any))
		}
		return out
	}
	strs := func(r map[string]any, k string) []string {
		v, _, _ := unstructured.NestedStringSlice(r, k)
		return v
	}
	for _, r := range rules(objs.must(t, "ClusterRole", "berth-controller")) {
		for _, res := range strs(r, "resources") {
			for _, v := range strs(r, "verbs") {
				if !writes[v] || strings.HasSuffix(res, "/status") || res == "events" {
					continue
				}
				if v == "delete" && migration[res] {
					continue
				}
				t.Errorf("the controller's ClusterRole may %s %s in every namespace", v, res)
			}
		}
	}
	role := objs.must(t, "Role", "berth-controller")
	if role.GetNamespace() != namespace {
		t.Fatalf("Role berth-controller in %q", role.GetNamespace())
	}
	can := map[string]bool{}
	for _, r := range rules(role) {
		for _, res := range strs(r, "resources") {
			for _, v := range strs(r, "verbs") {
				can[v+" "+res] = true
			}
		}
	}
	for _, want := range []string{"create secrets", "patch secrets", "create deployments", "patch deployments", "delete deployments",
		"create services", "patch services", "create configmaps", "create serviceaccounts"} {
		if !can[want] {
			t.Errorf("the controller's Role cannot %s in the release's namespace", want)
		}
	}
}
