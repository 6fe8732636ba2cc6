package nftrules

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
)

// Packets through vocabulary(), with outcomes worked out by hand from the
// rules.
func TestTracer(t *testing.T) {
	f := NewFake("t")
	if err := apply(t, f, nil, vocabulary()); err != nil {
		t.Fatal(err)
	}
	rs, _ := f.Ruleset()
	tr, err := NewTracer(rs)
	if err != nil {
		t.Fatal(err)
	}
	a := netip.MustParseAddr
	for _, c := range []struct {
		name, chain string
		p           Packet
		// want lists each result as "verdict[ dnat][ masq][ counters]".
		want []string
	}{
		{"an established flow passes", "fwd", Packet{Src: a("10.9.1.1"), Dst: a("10.0.0.1"), Proto: "tcp", DPort: 1, OIFName: "berth0", CtState: "established"}, []string{"accept"}},
		{"neighbour discovery passes", "fwd", Packet{Src: a("fd00::9"), Dst: a("fd00::1"), Proto: "icmpv6", ICMPType: 135, OIFName: "berth0"}, []string{"accept"}},
		{"echo requests are not neighbour discovery", "fwd", Packet{Src: a("fd09::9"), Dst: a("fd00::1"), Proto: "icmpv6", ICMPType: 128, OIFName: "berth0"}, []string{"accept"}},
		{"a pod's allowed port range", "fwd", Packet{Src: a("10.0.0.1"), Dst: a("10.1.0.1"), Proto: "tcp", DPort: 85, OIFName: "berth0"}, []string{"accept"}},
		{"a pod's UDP 53", "fwd", Packet{Src: a("10.0.0.1"), Dst: a("10.1.0.1"), Proto: "udp", DPort: 53, OIFName: "berth0"}, []string{"accept"}},
		{"a pod's port outside its sets", "fwd", Packet{Src: a("10.0.0.1"), Dst: a("10.1.0.1"), Proto: "tcp", DPort: 91, OIFName: "berth0"}, []string{"drop"}},
		{"a pod's named port", "fwd", Packet{Src: a("10.0.0.1"), Dst: a("10.244.1.7"), Proto: "tcp", DPort: 8080, OIFName: "berth0"}, []string{"accept"}},
		{"a blocked source, counted", "fwd", Packet{Src: a("10.10.0.9"), Dst: a("10.1.0.1"), Proto: "tcp", DPort: 80, OIFName: "berth0"}, []string{"drop dropped"}},
		{"just past the blocked range", "fwd", Packet{Src: a("10.10.0.10"), Dst: a("10.1.0.1"), Proto: "tcp", DPort: 80, OIFName: "berth0"}, []string{"accept"}},
		{"another interface is not looked at", "fwd", Packet{Src: a("10.10.0.9"), Dst: a("10.1.0.1"), Proto: "tcp", DPort: 80, OIFName: "eth0"}, []string{"accept"}},
		{"a Service balances to both endpoints", "pre", Packet{Src: a("10.244.1.5"), Dst: a("10.96.0.10"), Proto: "tcp", DPort: 80},
			[]string{"accept 10.244.1.7:8080", "accept 10.244.1.7:8080", "accept 10.244.2.9:8080"}},
		{"a node port on a local address", "pre", Packet{Src: a("192.0.2.1"), Dst: a("192.0.2.11"), Proto: "tcp", DPort: 30080, LocalDst: true},
			[]string{"accept 10.244.1.7:8080", "accept 10.244.1.7:8080", "accept 10.244.2.9:8080"}},
		{"the node port on another's address", "pre", Packet{Src: a("192.0.2.1"), Dst: a("192.0.2.12"), Proto: "tcp", DPort: 30080}, []string{"accept"}},
		{"a pod leaving the cluster is masqueraded", "post", Packet{Src: a("10.244.1.5"), Dst: a("8.8.8.8"), Proto: "udp", DPort: 53}, []string{"accept masq"}},
		{"pod to pod keeps its source", "post", Packet{Src: a("10.244.1.5"), Dst: a("10.244.2.9"), Proto: "tcp", DPort: 80}, []string{"accept"}},
		{"a hairpin is marked and masqueraded", "post", Packet{Src: a("10.244.1.7"), Dst: a("10.244.1.7"), Proto: "tcp", DPort: 8080}, []string{"accept masq"}},
		{"IPv4 is rejected by the output hook", "reject", Packet{Src: a("10.244.1.7"), Dst: a("10.96.0.1"), Proto: "tcp", DPort: 1}, []string{"reject"}},
		{"IPv6 is not", "reject", Packet{Src: a("fd00::1"), Dst: a("fd00::2"), Proto: "tcp", DPort: 1}, []string{"accept"}},
	} {
		res, err := tr.Run(c.chain, c.p)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		var got []string
		for _, r := range res {
			s := r.Verdict
			if r.DNAT.IsValid() {
				s += " " + r.DNAT.String()
			}
			if r.Masquerade {
				s += " masq"
			}
			if len(r.Counters) > 0 {
				s += " " + strings.Join(r.Counters, ",")
			}
			got = append(got, s)
		}
		slices.Sort(got)
		if !slices.Equal(got, c.want) {
			t.Errorf("%s: %q, want %q; paths %v", c.name, got, c.want, res)
		}
	}
	if _, err := tr.Run("pods", Packet{Src: a("10.0.0.1"), Dst: a("10.0.0.2"), Proto: "tcp"}); err == nil {
		t.Errorf("tracing from a regular chain: no error")
	}
}
