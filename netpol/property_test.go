package netpol

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// gen draws random policies and connections over the fixture.
type gen struct{ r *rand.Rand }

func pick[T any](g gen, xs ...T) T { return xs[g.r.IntN(len(xs))] }

func (g gen) selector() *metav1.LabelSelector {
	switch g.r.IntN(4) {
	case 0:
		return sel()
	case 1:
		return &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
			{Key: "pod", Operator: metav1.LabelSelectorOpNotIn, Values: []string{pick(g, fixturePods...)}},
		}}
	default:
		return sel("pod=" + pick(g, fixturePods...))
	}
}

func (g gen) nsSelector() *metav1.LabelSelector {
	if g.r.IntN(3) == 0 {
		return sel()
	}
	return sel("ns=" + pick(g, fixtureNS...))
}

func (g gen) peers() []networkingv1.NetworkPolicyPeer {
	var out []networkingv1.NetworkPolicyPeer
	for range g.r.IntN(3) {
		switch g.r.IntN(4) {
		case 0:
			out = append(out, podPeer(g.selector()))
		case 1:
			out = append(out, nsPeer(g.nsSelector()))
		case 2:
			out = append(out, bothPeer(g.nsSelector(), g.selector()))
		default:
			out = append(out, pick(g,
				blockPeer("10.0.0.0/16", "10.0.1.0/24"),
				blockPeer("10.0.2.0/24"),
				blockPeer("192.168.0.0/16"),
				blockPeer("0.0.0.0/0", "10.0.0.0/8"),
				blockPeer("fd00::/64", "fd00::3:0/112"),
				blockPeer("172.16.0.0/12")))
		}
	}
	return out
}

func (g gen) ports() []networkingv1.NetworkPolicyPort {
	var out []networkingv1.NetworkPolicyPort
	for range g.r.IntN(3) {
		out = append(out, pick(g,
			port("", 80), port(corev1.ProtocolUDP, 82), port(corev1.ProtocolTCP, 53),
			portRange(80, 81), namedPort("", "serve"), namedPort(corev1.ProtocolUDP, "serve"),
			allPortsOf(corev1.ProtocolUDP)))
	}
	return out
}

func (g gen) policy(i int) networkingv1.NetworkPolicy {
	types := pick(g, [][]networkingv1.PolicyType{nil, {ingress}, {egress}, {ingress, egress}}...)
	p := policy(pick(g, fixtureNS...), fmt.Sprintf("p%d", i), g.selector(), types...)
	for range g.r.IntN(3) {
		p = withIngress(p, ports(from(g.peers()...), g.ports()...))
	}
	for range g.r.IntN(3) {
		p = withEgress(p, egressPorts(to(g.peers()...), g.ports()...))
	}
	return p
}

func (g gen) policies(first, n int) []networkingv1.NetworkPolicy {
	var out []networkingv1.NetworkPolicy
	for i := range n {
		out = append(out, g.policy(first+i))
	}
	return out
}

func (g gen) conn() Conn {
	outside := []string{"192.168.1.1", "8.8.8.8", "10.0.1.9"}
	end := func() string {
		if g.r.IntN(5) == 0 {
			return pick(g, outside...)
		}
		return pick(g, fixtureNS...) + "/" + pick(g, fixturePods...)
	}
	c := Conn{Src: addr(end()), Dst: addr(end()), Protocol: pick(g, corev1.ProtocolTCP, corev1.ProtocolUDP), Port: pick(g, int32(80), 81, 82, 53)}
	if g.r.IntN(6) == 0 {
		c.Src, c.SrcNode = netip.MustParseAddr("172.16.0.1"), pick(g, "n1", "n2", "n3")
	}
	return c
}

// checkUnion checks, for one seed, the law that makes policies additive: a
// side of P1 ∪ P2 is isolated by the union of the isolating policies, allows
// by the union of the matching rules, and so allows when neither set
// isolates it or either set has a matching rule. With it: adding a policy
// never allows what was denied unless one of its rules matches, and never
// denies what was allowed unless it isolates a pod that was not isolated.
func checkUnion(t *testing.T, seed uint64) {
	g := gen{rand.New(rand.NewPCG(seed, 0))}
	p1 := g.policies(0, g.r.IntN(4))
	p2 := g.policies(10, 1+g.r.IntN(3))
	both := append(slices.Clone(p1), p2...)
	ns, ps := namespaces(), pods()
	if err := Validate(both, ps); err != nil {
		t.Fatalf("seed %d: generator made invalid policies: %v", seed, err)
	}
	for range 20 {
		c := g.conn()
		v1, v2, vu := Allowed(p1, ns, ps, c), Allowed(p2, ns, ps, c), Allowed(both, ns, ps, c)
		for _, s := range []struct {
			dir     string
			a, b, u Side
		}{{"egress", v1.Egress, v2.Egress, vu.Egress}, {"ingress", v1.Ingress, v2.Ingress, vu.Ingress}} {
			iso := append(slices.Clone(s.a.Isolating), s.b.Isolating...)
			slices.Sort(iso)
			if !slices.Equal(iso, s.u.Isolating) {
				t.Errorf("seed %d %v %s: isolating %v ∪ %v = %v", seed, c, s.dir, s.a.Isolating, s.b.Isolating, s.u.Isolating)
			}
			if len(s.a.AllowedBy)+len(s.b.AllowedBy) != len(s.u.AllowedBy) {
				t.Errorf("seed %d %v %s: rules %v ∪ %v = %v", seed, c, s.dir, s.a.AllowedBy, s.b.AllowedBy, s.u.AllowedBy)
			}
			want := len(iso) == 0 || len(s.a.AllowedBy)+len(s.b.AllowedBy) > 0 || s.u.FromNode
			if s.u.Allowed != want {
				t.Errorf("seed %d %v %s: union allowed=%v, want %v\nP1: %v\nP2: %v\nunion: %v", seed, c, s.dir, s.u.Allowed, want, v1, v2, vu)
			}
			// Already isolated by P1: P2 can only add to what is allowed.
			if len(s.a.Isolating) > 0 && s.a.Allowed && !s.u.Allowed {
				t.Errorf("seed %d %v %s: P2 took away what P1 allowed on an isolated pod", seed, c, s.dir)
			}
		}
		if vu.Allowed != (vu.Egress.Allowed && vu.Ingress.Allowed) {
			t.Errorf("seed %d %v: verdict %v is not egress AND ingress", seed, c, vu)
		}
		if !v1.Allowed && vu.Allowed && !v1.Ingress.FromNode {
			// Newly allowed: a rule of P2 must match on each side P1 denied.
			if (!v1.Egress.Allowed && len(v2.Egress.AllowedBy) == 0) || (!v1.Ingress.Allowed && len(v2.Ingress.AllowedBy) == 0) {
				t.Errorf("seed %d %v: P2 allowed it with no matching rule: %v", seed, c, vu)
			}
		}
		// Order does not matter.
		shuffled := slices.Clone(both)
		g.r.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		if vs := Allowed(shuffled, ns, ps, c); vs.String() != vu.String() {
			t.Errorf("seed %d: order changed the verdict:\n%v\n%v", seed, vu, vs)
		}
		// Denying everything everywhere leaves only the own node and
		// traffic with no pod at either end.
		var deny []networkingv1.NetworkPolicy
		for _, n := range fixtureNS {
			deny = append(deny, policy(n, "deny-all", sel(), ingress, egress))
		}
		vd := Allowed(append(deny, both...), ns, ps, c)
		if vd.Allowed != vu.Allowed && !vu.Allowed {
			t.Errorf("seed %d %v: adding deny-all allowed something", seed, c)
		}
	}
}

func TestUnionProperty(t *testing.T) {
	for seed := range uint64(500) {
		checkUnion(t, seed)
	}
}

// FuzzUnion explores more seeds: go test -fuzz FuzzUnion ./netpol/
func FuzzUnion(f *testing.F) {
	for _, s := range []uint64{1, 42, 1 << 40} {
		f.Add(s)
	}
	f.Fuzz(checkUnion)
}

// TestFamiliesAgree: without ipBlocks, a policy's verdicts do not depend on
// the address family, since the fixture's IPv4 and IPv6 addresses name the
// same pods.
func TestFamiliesAgree(t *testing.T) {
	for seed := range uint64(100) {
		g := gen{rand.New(rand.NewPCG(seed, 1))}
		pols := g.policies(0, 1+g.r.IntN(4))
		for i := range pols {
			pols[i].Spec.Ingress = slices.DeleteFunc(pols[i].Spec.Ingress, func(r networkingv1.NetworkPolicyIngressRule) bool {
				return slices.ContainsFunc(r.From, func(p networkingv1.NetworkPolicyPeer) bool { return p.IPBlock != nil })
			})
			pols[i].Spec.Egress = slices.DeleteFunc(pols[i].Spec.Egress, func(r networkingv1.NetworkPolicyEgressRule) bool {
				return slices.ContainsFunc(r.To, func(p networkingv1.NetworkPolicyPeer) bool { return p.IPBlock != nil })
			})
		}
		for _, proto := range []corev1.Protocol{corev1.ProtocolTCP, corev1.ProtocolUDP} {
			for _, port := range []int32{80, 81, 82} {
				v4 := Reachability(pols, namespaces(), pods(), proto, port, false)
				v6 := Reachability(pols, namespaces(), pods(), proto, port, true)
				if d, _ := Diff(v4, v6); !d.Empty() {
					t.Errorf("seed %d %s/%d: IPv4 and IPv6 disagree:\n%s", seed, proto, port, d)
				}
			}
		}
	}
}
