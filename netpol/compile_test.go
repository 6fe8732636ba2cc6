package netpol

import (
	"context"
	"flag"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"

	"github.com/berthnet/berth/internal/golden"
	"github.com/berthnet/berth/internal/nftrules"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// goldenPolicies use every form the compiler writes: deny-all both ways,
// pod and namespace selectors alone and together, ipBlock with except in
// both families, numeric, ranged, named and protocol-only ports, SCTP,
// egress to named ports of other pods, and overlapping policies.
func goldenPolicies() []networkingv1.NetworkPolicy {
	return []networkingv1.NetworkPolicy{
		policy("x", "deny-all", sel(), ingress, egress),
		withIngress(policy("x", "allow-b", sel("pod=a")), from(podPeer(sel("pod=b")))),
		withIngress(policy("x", "ns-y-and-c", sel("pod=a")),
			ports(from(bothPeer(sel("ns=y"), sel("pod=c"))), port("", 80), portRange(8000, 8080), port(corev1.ProtocolSCTP, 9)),
			ports(from(nsPeer(sel("ns=z"))), namedPort("", "serve"), allPortsOf(corev1.ProtocolUDP))),
		withIngress(policy("z", "block", sel("pod=a")),
			from(blockPeer("10.0.0.0/16", "10.0.1.0/24", "10.0.3.0/30"), blockPeer("fd00::/64", "fd00::3:0/112"))),
		withEgress(policy("x", "to-serve", sel("pod=a"), egress),
			egressPorts(to(nsPeer(sel("ns=y"))), namedPort("", "serve"), port(corev1.ProtocolUDP, 53)),
			egressPorts(to(blockPeer("192.168.0.0/16")))),
		withIngress(policy("y", "open", sel()), from()),
	}
}

func goldenInput() Input {
	return Input{
		Policies: goldenPolicies(), Namespaces: namespaces(), Pods: pods(), Node: "n1",
		NodeIPs: []netip.Addr{nodeAddr("n1"), netip.MustParseAddr("fd00:172::1")},
		// A range of n1's with no pod the ruleset knows yet.
		PodCIDRs: []netip.Prefix{netip.MustParsePrefix("10.0.9.0/24"), netip.MustParsePrefix("fd00::9:0/112")},
	}
}

func applyFake(t *testing.T, rs nftrules.Ruleset) *nftrules.Fake {
	t.Helper()
	f := nftrules.NewFake(Table)
	tx := nftrules.NewTx(Table)
	nftrules.Sync(tx, nil, rs)
	if err := f.Apply(context.Background(), tx); err != nil {
		t.Fatalf("%v\n%s", err, tx)
	}
	return f
}

// dump is the table a fake holds as the nft commands that build it.
func dump(t *testing.T, f *nftrules.Fake) string {
	t.Helper()
	rs, ok := f.Ruleset()
	if !ok {
		t.Fatal("no table")
	}
	tx := nftrules.NewTx(Table)
	nftrules.Sync(tx, nil, rs)
	// A rebuild first deletes the table; the dump shows what it builds.
	return strings.Replace(tx.String(), "add table inet "+Table+"\ndelete table inet "+Table+"\n", "", 1)
}

// TestCompileGolden: the table of node n1, sorted, against
// testdata/n1.nft (go test ./netpol -run Golden -update rewrites it).
func TestCompileGolden(t *testing.T) {
	got := dump(t, applyFake(t, Compile(goldenInput())))
	golden.Compare(t, filepath.Join("testdata", "n1.nft"), []byte(got), *update)
}

// TestCompileTraces checks the golden table by packets, named cases the
// evaluator must agree with, and the two rules the evaluator has no word
// for: an address in the node's pod ranges that is no known pod is
// dropped while policies exist, and the node's own address passes.
func TestCompileTraces(t *testing.T) {
	in := goldenInput()
	f := applyFake(t, Compile(in))
	tr := newTracer(f)
	for _, c := range []struct {
		name     string
		p        packet
		verdict  string
		counters []string
	}{
		{"b reaches a (allow-b)", packet{addr("x/b"), addr("x/a"), "tcp", 81}, "accept", nil},
		{"c of x does not reach a", packet{addr("x/c"), addr("x/a"), "tcp", 80}, "drop", []string{"drop-x/allow-b", "drop-x/deny-all", "drop-x/ns-y-and-c"}},
		{"y/c reaches a on 80", packet{addr("y/c"), addr("x/a"), "tcp", 80}, "accept", nil},
		{"y/c reaches a in the range", packet{addr("y/c"), addr("x/a"), "tcp", 8042}, "accept", nil},
		{"y/c reaches a on SCTP 9", packet{addr("y/c"), addr("x/a"), "sctp", 9}, "accept", nil},
		{"y/b does not reach a (AND)", packet{addr("y/b"), addr("x/a"), "tcp", 80}, "drop", nil},
		{"z/b reaches a's named port", packet{addr("z/b"), addr("x/a"), "tcp", 80}, "accept", nil},
		{"z/b reaches a on any UDP port", packet{addr("z/b"), addr("x/a"), "udp", 4444}, "accept", nil},
		{"z/b does not reach a on TCP 81", packet{addr("z/b"), addr("x/a"), "tcp", 81}, "drop", nil},
		{"10.0.2.9 reaches z/a (ipBlock)", packet{netip.MustParseAddr("10.0.2.9"), addr("z/a"), "tcp", 1}, "accept", nil},
		{"10.0.3.2 is excepted", packet{netip.MustParseAddr("10.0.3.2"), addr("z/a"), "tcp", 1}, "drop", nil},
		{"fd00::3:5 is excepted", packet{netip.MustParseAddr("fd00::3:5"), addr("z/a6"), "tcp", 1}, "drop", nil},
		{"fd00::2:5 reaches z/a over IPv6", packet{netip.MustParseAddr("fd00::2:5"), addr("z/a6"), "tcp", 1}, "accept", nil},
		{"a egresses to y/b's named port 81", packet{addr("x/a"), addr("y/b"), "tcp", 81}, "accept", nil},
		{"a does not egress to y/b on 80", packet{addr("x/a"), addr("y/b"), "tcp", 80}, "drop", nil},
		{"a egresses to 192.168.4.4", packet{addr("x/a"), netip.MustParseAddr("192.168.4.4"), "tcp", 443}, "accept", nil},
		{"the node reaches a", packet{nodeAddr("n1"), addr("x/a"), "tcp", 80}, "accept", nil},
		{"an unknown address in the pod range is dropped", packet{netip.MustParseAddr("10.0.9.9"), netip.MustParseAddr("8.8.8.8"), "tcp", 80}, "drop", []string{CounterUnknown}},
		{"traffic to an unknown pod address is dropped", packet{netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("fd00::9:99"), "tcp", 80}, "drop", []string{CounterUnknown}},
		{"outside to outside passes", packet{netip.MustParseAddr("8.8.8.8"), netip.MustParseAddr("1.1.1.1"), "udp", 53}, "accept", nil},
	} {
		v, err := tr.run("forward", c.p)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if v != c.verdict {
			t.Errorf("%s: %s, want %s; path %v", c.name, v, c.verdict, tr.path)
		}
		if c.counters != nil && !cmp.Equal(tr.counters, c.counters) {
			t.Errorf("%s: counted on %v, want %v", c.name, tr.counters, c.counters)
		}
	}
	// A pod's traffic to the node itself is its egress (input hook).
	if v, _ := tr.run("input", packet{addr("x/a"), nodeAddr("n1"), "tcp", 22}); v != "drop" {
		t.Errorf("x/a (isolated for egress) reached its node: %v", tr.path)
	}
	// Without any policy the unknown addresses pass: nothing isolates.
	in.Policies = nil
	tr = newTracer(applyFake(t, Compile(in)))
	if v, _ := tr.run("forward", packet{netip.MustParseAddr("10.0.9.9"), addr("x/a"), "tcp", 80}); v != "accept" {
		t.Errorf("without policies an unknown pod address was dropped: %v", tr.path)
	}
}
