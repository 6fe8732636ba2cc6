package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/berthnet/berth/test/labtest"
)

// NetworkPolicy in the lab, by upstream's truth-table method: for each
// case, every pair of the model's nine pods on TCP and UDP 80 and 81,
// compared with the evaluator's expectation; then Service backends behind
// a ClusterIP, and a pod started under deny-all.
func TestNetworkPolicy(t *testing.T) {
	l, ctx := labtest.Start(t, 20*time.Minute)
	m := newNPModel(ctx, t, l)
	m.waitTruthTable(ctx, t, "no policies", npAllAllowed)
	t.Run("truth tables", func(t *testing.T) { npTruthTables(ctx, t, m) })
	t.Run("ClusterIP backends", func(t *testing.T) { npClusterIP(ctx, t, m) })
	t.Run("new pod under deny-all", func(t *testing.T) { npNewPodDenied(ctx, t, m) })
}

// npPolicy builds a policy selecting pods by "k=v" labels (none: all).
func npPolicy(ns, name string, podSel map[string]string, types ...networkingv1.PolicyType) *networkingv1.NetworkPolicy {
	return &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       networkingv1.NetworkPolicySpec{PodSelector: metav1.LabelSelector{MatchLabels: podSel}, PolicyTypes: types},
	}
}

func npFrom(p *networkingv1.NetworkPolicy, ports []networkingv1.NetworkPolicyPort, peers ...networkingv1.NetworkPolicyPeer) *networkingv1.NetworkPolicy {
	p.Spec.Ingress = append(p.Spec.Ingress, networkingv1.NetworkPolicyIngressRule{From: peers, Ports: ports})
	return p
}

func npTo(p *networkingv1.NetworkPolicy, ports []networkingv1.NetworkPolicyPort, peers ...networkingv1.NetworkPolicyPeer) *networkingv1.NetworkPolicy {
	p.Spec.Egress = append(p.Spec.Egress, networkingv1.NetworkPolicyEgressRule{To: peers, Ports: ports})
	return p
}

func npPeer(nsSel, podSel map[string]string) networkingv1.NetworkPolicyPeer {
	var p networkingv1.NetworkPolicyPeer
	if nsSel != nil {
		p.NamespaceSelector = &metav1.LabelSelector{MatchLabels: nsSel}
	}
	if podSel != nil {
		p.PodSelector = &metav1.LabelSelector{MatchLabels: podSel}
	}
	return p
}

func npPort(proto corev1.Protocol, port intstr.IntOrString, end int32) networkingv1.NetworkPolicyPort {
	p := networkingv1.NetworkPolicyPort{Protocol: &proto, Port: &port}
	if end != 0 {
		p.EndPort = &end
	}
	return p
}

func (m *npModel) create(ctx context.Context, t *testing.T, pols ...*networkingv1.NetworkPolicy) {
	t.Helper()
	for _, p := range pols {
		if _, err := m.c.NetworkingV1().NetworkPolicies(p.Namespace).Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatalf("create policy %s/%s: %v", p.Namespace, p.Name, err)
		}
	}
}

func (m *npModel) clear(ctx context.Context, t *testing.T) {
	t.Helper()
	for _, ns := range npNamespaces {
		if err := m.c.NetworkingV1().NetworkPolicies(ns).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{}); err != nil {
			t.Fatal(err)
		}
	}
}

func (m *npModel) label(ctx context.Context, t *testing.T, kind, ns, name, key, value string) {
	t.Helper()
	patch := []byte(`{"metadata":{"labels":{"` + key + `":"` + value + `"}}}`)
	var err error
	if kind == "namespace" {
		_, err = m.c.CoreV1().Namespaces().Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{})
	} else {
		_, err = m.c.CoreV1().Pods(ns).Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{})
	}
	if err != nil {
		t.Fatal(err)
	}
}

func npTruthTables(ctx context.Context, t *testing.T, m *npModel) {
	const (
		in = networkingv1.PolicyTypeIngress
		eg = networkingv1.PolicyTypeEgress
	)
	tcp, udp := corev1.ProtocolTCP, corev1.ProtocolUDP
	var yb string
	for _, p := range m.pods {
		if p.Namespace == "y" && p.Name == "b" {
			yb = p.Status.PodIP
		}
	}
	// Each step's table is written by hand from its policies (pods a, b,
	// c in namespaces x, y, z; probes TCP and UDP 80 and 81).
	steps := []struct {
		name string
		do   func()
		want npExpect
	}{
		{"default deny ingress in x", func() { m.create(ctx, t, npPolicy("x", "deny-ingress", nil, in)) },
			// Nothing reaches a pod of x, not even from x.
			func(f, to npPod, pr npProbe) bool { return to.ns != "x" }},
		{"default deny egress in x", func() { m.clear(ctx, t); m.create(ctx, t, npPolicy("x", "deny-egress", nil, eg)) },
			// No pod of x reaches anything, not even in x.
			func(f, to npPod, pr npProbe) bool { return f.ns != "x" }},
		{"allow x/a from pod selector pod=b", func() {
			m.clear(ctx, t)
			m.create(ctx, t, npFrom(npPolicy("x", "allow-from", map[string]string{"pod": "a"}), nil, npPeer(nil, map[string]string{"pod": "b"})))
		},
			// x/a only from x/b (a pod selector alone stays in x).
			func(f, to npPod, pr npProbe) bool { return !to.is("x", "a") || f.is("x", "b") }},
		{"policy updated in place (from pod=c)", func() {
			p, err := m.c.NetworkingV1().NetworkPolicies("x").Get(ctx, "allow-from", metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			p.Spec.Ingress[0].From[0].PodSelector.MatchLabels = map[string]string{"pod": "c"}
			if _, err := m.c.NetworkingV1().NetworkPolicies("x").Update(ctx, p, metav1.UpdateOptions{}); err != nil {
				t.Fatal(err)
			}
		},
			// x/a only from x/c.
			func(f, to npPod, pr npProbe) bool { return !to.is("x", "a") || f.is("x", "c") }},
		{"pod relabelled (x/b becomes pod=c)", func() { m.label(ctx, t, "pod", "x", "b", "pod", "c") },
			// x/b now carries pod=c too: x/a from x/b and x/c.
			func(f, to npPod, pr npProbe) bool { return !to.is("x", "a") || f.is("x", "b") || f.is("x", "c") }},
		{"pod label restored", func() { m.label(ctx, t, "pod", "x", "b", "pod", "b") },
			func(f, to npPod, pr npProbe) bool { return !to.is("x", "a") || f.is("x", "c") }},
		{"allow x/a from namespace selector ns=y", func() {
			m.clear(ctx, t)
			m.create(ctx, t, npFrom(npPolicy("x", "allow-ns", map[string]string{"pod": "a"}), nil, npPeer(map[string]string{"ns": "y"}, nil)))
		},
			// x/a only from the pods of y (not even from x).
			func(f, to npPod, pr npProbe) bool { return !to.is("x", "a") || f.ns == "y" }},
		{"namespace relabelled (z becomes ns=y)", func() { m.label(ctx, t, "namespace", "", "z", "ns", "y") },
			func(f, to npPod, pr npProbe) bool { return !to.is("x", "a") || f.ns == "y" || f.ns == "z" }},
		{"namespace label restored", func() { m.label(ctx, t, "namespace", "", "z", "ns", "z") },
			func(f, to npPod, pr npProbe) bool { return !to.is("x", "a") || f.ns == "y" }},
		{"namespace AND pod selector in one peer", func() {
			m.clear(ctx, t)
			m.create(ctx, t, npFrom(npPolicy("x", "and", map[string]string{"pod": "a"}), nil, npPeer(map[string]string{"ns": "y"}, map[string]string{"pod": "b"})))
		},
			// Both selectors in one peer: x/a only from y/b.
			func(f, to npPod, pr npProbe) bool { return !to.is("x", "a") || f.is("y", "b") }},
		{"namespace OR pod selector in two peers", func() {
			m.clear(ctx, t)
			m.create(ctx, t, npFrom(npPolicy("x", "or", map[string]string{"pod": "a"}), nil, npPeer(map[string]string{"ns": "y"}, nil), npPeer(nil, map[string]string{"pod": "b"})))
		},
			// Two peers: x/a from every pod of y, and from x/b (the pod
			// selector alone stays in x, so not y/b's twin z/b).
			func(f, to npPod, pr npProbe) bool { return !to.is("x", "a") || f.ns == "y" || f.is("x", "b") }},
		{"ipBlock of the pod range except y/b", func() {
			m.clear(ctx, t)
			p := npPolicy("x", "block", map[string]string{"pod": "a"})
			p.Spec.Ingress = []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{
				CIDR: m.cfg.ClusterCIDR.String(), Except: []string{netip.PrefixFrom(netip.MustParseAddr(yb), 32).String()},
			}}}}}
			m.create(ctx, t, p)
		},
			// The pod range holds every pod: x/a from all but y/b.
			func(f, to npPod, pr npProbe) bool { return !to.is("x", "a") || !f.is("y", "b") }},
		{"named ports, ingress and egress", func() {
			m.clear(ctx, t)
			m.create(ctx, t,
				npFrom(npPolicy("x", "named-in", map[string]string{"pod": "a"}), []networkingv1.NetworkPolicyPort{npPort(tcp, intstr.FromString("serve-81"), 0), npPort(udp, intstr.FromString("serve-80-udp"), 0)}),
				npTo(npPolicy("y", "named-eg", map[string]string{"pod": "c"}, eg), []networkingv1.NetworkPolicyPort{npPort(tcp, intstr.FromString("serve-80"), 0)}, npPeer(map[string]string{"ns": "z"}, nil)))
		},
			// x/a takes anyone on TCP 81 (serve-81) and UDP 80
			// (serve-80-udp) only; y/c sends only to the pods of z, on
			// TCP 80 (their serve-80).
			func(f, to npPod, pr npProbe) bool {
				if to.is("x", "a") && pr != tcp81 && pr != udp80 {
					return false
				}
				if f.is("y", "c") {
					return to.ns == "z" && pr == tcp80
				}
				return true
			}},
		{"endPort ranges", func() {
			m.clear(ctx, t)
			m.create(ctx, t, npFrom(npPolicy("x", "range", nil), []networkingv1.NetworkPolicyPort{npPort(tcp, intstr.FromInt32(81), 90), npPort(udp, intstr.FromInt32(70), 80)}))
		},
			// Every pod of x takes TCP 81-90 and UDP 70-80 from anyone:
			// TCP 81 and UDP 80 of the probes.
			func(f, to npPod, pr npProbe) bool { return to.ns != "x" || pr == tcp81 || pr == udp80 }},
		{"overlapping policies", func() {
			m.clear(ctx, t)
			m.create(ctx, t,
				npFrom(npPolicy("x", "from-b-80", map[string]string{"pod": "a"}), []networkingv1.NetworkPolicyPort{npPort(tcp, intstr.FromInt32(80), 0)}, npPeer(nil, map[string]string{"pod": "b"})),
				npFrom(npPolicy("x", "from-y-81", map[string]string{"pod": "a"}), []networkingv1.NetworkPolicyPort{npPort(tcp, intstr.FromInt32(81), 0)}, npPeer(map[string]string{"ns": "y"}, nil)),
				npPolicy("x", "deny-all-in", nil, in),
				npTo(npPolicy("z", "egress-to-x", nil, eg), nil, npPeer(map[string]string{"ns": "x"}, nil)))
		},
			// x/a: TCP 80 from x/b, TCP 81 from y; the rest of x takes
			// nothing; z sends only to x, which takes nothing from z.
			func(f, to npPod, pr npProbe) bool {
				if f.ns == "z" && to.ns != "x" {
					return false
				}
				switch {
				case to.is("x", "a"):
					return (pr == tcp80 && f.is("x", "b")) || (pr == tcp81 && f.ns == "y")
				case to.ns == "x":
					return false
				}
				return true
			}},
		{"one policy deleted", func() {
			if err := m.c.NetworkingV1().NetworkPolicies("x").Delete(ctx, "deny-all-in", metav1.DeleteOptions{}); err != nil {
				t.Fatal(err)
			}
		},
			// x/b and x/c take anything again (z's pods included); x/a
			// as before; z still sends only to x.
			func(f, to npPod, pr npProbe) bool {
				if f.ns == "z" && to.ns != "x" {
					return false
				}
				if to.is("x", "a") {
					return (pr == tcp80 && f.is("x", "b")) || (pr == tcp81 && f.ns == "y")
				}
				return true
			}},
		{"all policies deleted", func() { m.clear(ctx, t) }, npAllAllowed},
	}
	for _, s := range steps {
		s.do()
		m.waitTruthTable(ctx, t, s.name, s.want)
	}
}

// npClusterIP: policies govern traffic through a ClusterIP by its backend
// pod: egress of x/a only to y/b on TCP 80, and ingress of y/b only from
// x/a.
func npClusterIP(ctx context.Context, t *testing.T, m *npModel) {
	m.clear(ctx, t)
	svcs := map[string]string{}
	for _, backend := range []string{"b", "c"} {
		svc := &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: "y", Name: "svc-" + backend},
			Spec: corev1.ServiceSpec{Selector: map[string]string{"pod": backend},
				Ports: []corev1.ServicePort{{Name: "p80", Port: 80, TargetPort: intstr.FromInt32(80)}}},
		}
		got, err := m.c.CoreV1().Services("y").Create(ctx, svc, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		svcs[backend] = got.Spec.ClusterIP
	}
	idx := map[string]int{}
	for i, n := range m.names() {
		idx[n] = i
	}
	type viaService struct {
		from, backend string // "x/a", "b" (the Service selecting y/b)
		want          bool   // by hand
	}
	check := func(what string, cases []viaService) {
		t.Helper()
		// The evaluator, on the backend pod, is the second opinion.
		eval := m.expected(ctx, t)[tcp80]
		for _, c := range cases {
			from, backend := idx[c.from], idx["y/"+c.backend]
			if eval.Allowed[from][backend] != c.want {
				t.Fatalf("%s: %s -> y/%s: by hand %v, the evaluator %v (%s)", what, c.from, c.backend, c.want, eval.Allowed[from][backend], eval.Why[from][backend])
			}
		}
		deadline := time.Now().Add(45 * time.Second)
		for {
			var bad []string
			for _, c := range cases {
				if got := reach(ctx, m.ns[idx[c.from]], svcs[c.backend], tcp80); got != c.want {
					bad = append(bad, fmt.Sprintf("%s -> ClusterIP of y/%s: reached %v, want %v", c.from, c.backend, got, c.want))
				}
			}
			if len(bad) == 0 {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s:\n%v", what, bad)
			}
		}
	}
	check("no policies", []viaService{{"x/a", "b", true}, {"x/a", "c", true}, {"x/b", "c", true}, {"x/c", "b", true}})
	m.create(ctx, t, npTo(npPolicy("x", "a-to-yb", map[string]string{"pod": "a"}, networkingv1.PolicyTypeEgress),
		[]networkingv1.NetworkPolicyPort{npPort(corev1.ProtocolTCP, intstr.FromInt32(80), 0)}, npPeer(map[string]string{"ns": "y"}, map[string]string{"pod": "b"})))
	check("egress of x/a to y/b only", []viaService{{"x/a", "b", true}, {"x/a", "c", false}, {"x/b", "c", true}, {"x/c", "b", true}})
	m.create(ctx, t, npFrom(npPolicy("y", "yb-from-xa", map[string]string{"pod": "b"}), nil, npPeer(map[string]string{"ns": "x"}, map[string]string{"pod": "a"})))
	check("ingress of y/b from x/a only", []viaService{{"x/a", "b", true}, {"x/a", "c", false}, {"x/b", "c", true}, {"x/c", "b", false}})
	m.clear(ctx, t)
	for _, b := range []string{"b", "c"} {
		if err := m.c.CoreV1().Services("y").Delete(ctx, "svc-"+b, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
}

// npNewPodDenied: with deny-all in x, a new pod x/d gets no packet in or
// out, probed from the moment its address exists in its namespace until
// it is Ready and its node's table knows it.
func npNewPodDenied(ctx context.Context, t *testing.T, m *npModel) {
	m.clear(ctx, t)
	m.create(ctx, t, npPolicy("x", "deny-all", nil, networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress))
	// Nothing in or out of x.
	m.waitTruthTable(ctx, t, "deny-all in x", func(f, to npPod, pr npProbe) bool { return f.ns != "x" && to.ns != "x" })
	var prober int // y/a, and the new pod goes on its node
	for i, p := range m.pods {
		if p.Namespace == "y" && p.Name == "a" {
			prober = i
		}
	}
	node := m.pods[prober].Spec.NodeName
	created, err := m.c.CoreV1().Pods("x").Create(ctx, npPodSpec("d", "x", node), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = m.c.CoreV1().Pods("x").Delete(context.Background(), "d", metav1.DeleteOptions{}) }()
	w := newPodWatch(ctx, t, m, created, node)
	ip := w.waitAddress()
	t.Logf("x/d has %s; probing both ways; compiled by its node's agent yet: %v", ip, w.inTable(ip))
	rounds, known := 0, 0
	for known < 5 {
		for _, pr := range npProbes {
			if passed := probePassed(ctx, m.ns[prober], ip, pr); passed != "" {
				t.Fatalf("round %d: y/a -> x/d %s: %s", rounds, pr, passed)
			}
			if passed := probePassed(ctx, w.ns, m.pods[prober].Status.PodIP, pr); passed != "" {
				t.Fatalf("round %d: x/d -> y/a %s: %s", rounds, pr, passed)
			}
		}
		rounds++
		if known > 0 || (w.ready() && w.inTable(ip)) {
			known++
		}
		if ctx.Err() != nil {
			t.Fatal(ctx.Err())
		}
	}
	t.Logf("no packet passed in %d rounds of probes (the last 5 with x/d Ready and in its node's table)", rounds)
	// Deny-all removed: the same pod is reachable, so the probes worked.
	m.clear(ctx, t)
	deadline := time.Now().Add(45 * time.Second)
	for !reach(ctx, m.ns[prober], ip, npProbes[0]) {
		if time.Now().After(deadline) {
			t.Fatalf("x/d unreachable after deny-all was deleted")
		}
	}
}
