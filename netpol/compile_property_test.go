package netpol

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"

	"github.com/berthnet/berth/internal/nftrules"
)

// The fixture's nodes n1..n3 have the addresses 172.16.0.1..3.
var fixtureNodes = []string{"n1", "n2", "n3"}

func nodeAddr(node string) netip.Addr {
	for i, n := range fixtureNodes {
		if n == node {
			return netip.AddrFrom4([4]byte{172, 16, 0, byte(i + 1)})
		}
	}
	panic("no node " + node)
}

// cluster3 is the fixture compiled and applied on each node, each through
// its own fake table.
type cluster3 struct {
	fakes map[string]*nftrules.Fake
	last  map[string]*nftrules.Ruleset
}

func newCluster3() *cluster3 {
	c := &cluster3{fakes: map[string]*nftrules.Fake{}, last: map[string]*nftrules.Ruleset{}}
	for _, n := range fixtureNodes {
		c.fakes[n] = nftrules.NewFake(Table)
	}
	return c
}

// apply compiles pols for every node and syncs each node's fake from its
// last ruleset (the whole table the first time).
func (c *cluster3) apply(t *testing.T, pols []networkingv1.NetworkPolicy, ns []Namespace, ps []Pod) {
	t.Helper()
	for _, n := range fixtureNodes {
		rs := Compile(Input{Policies: pols, Namespaces: ns, Pods: ps, Node: n, NodeIPs: []netip.Addr{nodeAddr(n)}})
		f := c.fakes[n]
		tx := nftrules.NewTx(Table)
		nftrules.Sync(tx, c.last[n], rs)
		if err := f.Apply(context.Background(), tx); err != nil {
			t.Fatalf("node %s: %v\n%s", n, err, tx)
		}
		c.last[n] = &rs
	}
}

// allowed traces conn through the forward hook of each node it crosses:
// the source pod's, then the destination pod's (once when they are the
// same). Traffic from a node is traced on the destination's node, from that
// node's address.
func (c *cluster3) allowed(t *testing.T, ps []Pod, conn Conn) (bool, []string) {
	t.Helper()
	byIP := map[netip.Addr]*Pod{}
	for i := range ps {
		for _, ip := range ps[i].IPs {
			byIP[ip] = &ps[i]
		}
	}
	var nodes []string
	if conn.SrcNode == "" {
		if src := byIP[conn.Src]; src != nil {
			nodes = append(nodes, src.Node)
		}
	}
	if dst := byIP[conn.Dst]; dst != nil && (len(nodes) == 0 || nodes[0] != dst.Node) {
		nodes = append(nodes, dst.Node)
	}
	p := packet{src: conn.Src, dst: conn.Dst, proto: map[corev1.Protocol]string{"": "tcp", corev1.ProtocolTCP: "tcp", corev1.ProtocolUDP: "udp", corev1.ProtocolSCTP: "sctp"}[conn.Protocol], dport: int(conn.Port)}
	var path []string
	for _, n := range nodes {
		tr := newTracer(c.fakes[n])
		v, err := tr.run("forward", p)
		if err != nil {
			t.Fatalf("node %s: %v", n, err)
		}
		path = append(path, fmt.Sprintf("node %s: %s %v", n, v, tr.path))
		if v != "accept" {
			return false, path
		}
	}
	return true, path
}

// checkCompiled compares, for one seed, the compiled rules with the
// evaluator on random connections; then changes the policies and checks
// again after an incremental sync, and that the incremental table equals a
// table built whole.
func checkCompiled(t *testing.T, seed uint64) {
	g := gen{rand.New(rand.NewPCG(seed, 7))}
	ns, ps := namespaces(), pods()
	c := newCluster3()
	pols := g.policies(0, g.r.IntN(5))
	for round := range 3 {
		if err := Validate(pols, ps); err != nil {
			t.Fatalf("seed %d: generator made invalid policies: %v", seed, err)
		}
		c.apply(t, pols, ns, ps)
		for range 40 {
			conn := g.conn()
			if conn.SrcNode != "" {
				conn.Src = nodeAddr(conn.SrcNode)
			}
			want := Allowed(pols, ns, ps, conn)
			got, path := c.allowed(t, ps, conn)
			if got != want.Allowed {
				t.Fatalf("seed %d round %d: %v: rules say %v, evaluator %v\ntrace: %v\npolicies: %+v", seed, round, conn, got, want, path, pols)
			}
		}
		// Next round: drop one policy, change one, add one.
		if len(pols) > 0 {
			pols = pols[1:]
		}
		if len(pols) > 0 {
			pols[0] = g.policy(100 + round)
			pols[0].Name = "p-changed"
		}
		pols = append(pols, g.policies(10*(round+2), 1)...)
	}
	for _, n := range fixtureNodes {
		whole := nftrules.NewFake(Table)
		tx := nftrules.NewTx(Table)
		nftrules.Sync(tx, nil, *c.last[n])
		if err := whole.Apply(context.Background(), tx); err != nil {
			t.Fatal(err)
		}
		if a, b := sortedLines(dump(t, c.fakes[n])), sortedLines(dump(t, whole)); a != b {
			t.Fatalf("seed %d node %s: incremental table differs from the whole one:\n%s\n---\n%s", seed, n, a, b)
		}
	}
}

// TestCompiledMatchesEvaluator is the property: on random policies and
// connections, the packet-flow trace of the compiled rulesets (on every
// node the packet crosses) agrees with the evaluator, before and after
// incremental changes.
func TestCompiledMatchesEvaluator(t *testing.T) {
	for seed := range uint64(300) {
		checkCompiled(t, seed)
	}
}

// FuzzCompiled explores more seeds: go test -fuzz FuzzCompiled ./netpol/
func FuzzCompiled(f *testing.F) {
	for _, s := range []uint64{3, 99, 1 << 33} {
		f.Add(s)
	}
	f.Fuzz(checkCompiled)
}

// TestCompiledIPv6 runs the fixture's IPv6 addresses through the same
// comparison.
func TestCompiledIPv6(t *testing.T) {
	ns, ps := namespaces(), pods()
	for seed := range uint64(100) {
		g := gen{rand.New(rand.NewPCG(seed, 9))}
		pols := g.policies(0, 1+g.r.IntN(4))
		c := newCluster3()
		c.apply(t, pols, ns, ps)
		for range 40 {
			from := pick(g, fixtureNS...) + "/" + pick(g, fixturePods...) + "6"
			to := pick(g, fixtureNS...) + "/" + pick(g, fixturePods...) + "6"
			conn := Conn{Src: addr(from), Dst: addr(to), Protocol: pick(g, corev1.ProtocolTCP, corev1.ProtocolUDP), Port: pick(g, int32(80), 81, 82)}
			want := Allowed(pols, ns, ps, conn)
			if got, path := c.allowed(t, ps, conn); got != want.Allowed {
				t.Fatalf("seed %d: %v: rules say %v, evaluator %v\ntrace: %v", seed, conn, got, want, path)
			}
		}
	}
}

func sortedLines(s string) string {
	lines := strings.Split(s, "\n")
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}
