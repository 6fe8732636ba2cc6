package proxy

import (
	"context"
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"testing"

	"github.com/berthnet/berth/internal/nftrules"
)

// The tracer (nftrules.Tracer) follows a virtual packet through the rules
// as applied to the fake backend, so the tests assert behaviour ("to
// 10.96.0.10:53/udp from pod A goes to B or C, not masqueraded") of the
// very expressions that would reach the kernel, not of the builder's
// intent.

type packet struct {
	src, dst netip.Addr
	proto    string
	dport    uint16
	// hook is "prerouting" (arriving) or "output" (from the node itself).
	hook string
	// local reports whether dst is one of the node's own addresses.
	local bool
}

type outcome struct {
	verdict string // "dnat", "reject", "accept"
	to      string // DNAT target
	masq    bool
}

func (o outcome) String() string {
	switch o.verdict {
	case "dnat":
		return fmt.Sprintf("dnat %s masq=%v", o.to, o.masq)
	default:
		return o.verdict
	}
}

// trace returns every outcome the packet may have (random balancing
// forks): the filter hook first (Services without endpoints reject), then
// the nat hook, then nat-postrouting for the packet as DNAT left it.
func trace(t *testing.T, rs nftrules.Ruleset, p packet) []outcome {
	t.Helper()
	tr, err := nftrules.NewTracer(rs)
	if err != nil {
		t.Fatal(err)
	}
	pkt := nftrules.Packet{Src: p.src, Dst: p.dst, Proto: p.proto, SPort: 40000, DPort: p.dport, LocalDst: p.local}
	run := func(chain string, pkt nftrules.Packet) []nftrules.Result {
		t.Helper()
		res, err := tr.Run(chain, pkt)
		if err != nil {
			t.Fatalf("%s: %v", chain, err)
		}
		return res
	}
	for _, r := range run("filter-"+p.hook, pkt) {
		if r.Verdict != "accept" {
			return []outcome{{verdict: r.Verdict}}
		}
	}
	var final []outcome
	for _, r := range run("nat-"+p.hook, pkt) {
		o := outcome{verdict: r.Verdict}
		after := pkt
		after.Mark = r.Mark
		if r.DNAT.IsValid() {
			o.verdict, o.to = "dnat", r.DNAT.String()
			after.Dst, after.DPort = r.DNAT.Addr(), r.DNAT.Port()
		}
		for _, post := range run("nat-postrouting", after) {
			o.masq = o.masq || post.Masquerade
		}
		final = append(final, o)
	}
	sort.Slice(final, func(i, j int) bool { return final[i].String() < final[j].String() })
	return final
}

// applied builds the state, applies it to the fake (fully, or as a diff
// from prev), and checks that the fake then holds exactly what a full build
// would. appliedRS is a ruleset as built and as the fake holds it.
type appliedRS struct {
	built, live nftrules.Ruleset
}

// live is what the fake holds.
func live(t *testing.T, f *nftrules.Fake) nftrules.Ruleset {
	t.Helper()
	rs, ok := f.Ruleset()
	if !ok {
		t.Fatalf("no table")
	}
	return rs
}

func applied(t *testing.T, f *nftrules.Fake, prev *appliedRS, st State) appliedRS {
	t.Helper()
	next := Build(st)
	tx := nftrules.NewTx(Table)
	var p *nftrules.Ruleset
	if prev != nil {
		p = &prev.built
	}
	nftrules.Sync(tx, p, next)
	if err := f.Apply(context.Background(), tx); err != nil {
		t.Fatalf("apply: %v\n%s", err, tx)
	}
	got := live(t, f)
	for name, rules := range next.Chains {
		if strings.Join(got.Chains[name], "\n") != strings.Join(rules, "\n") {
			t.Fatalf("chain %s after sync:\n%v\nwant\n%v", name, got.Chains[name], rules)
		}
	}
	for name := range got.Chains {
		if _, ok := next.Chains[name]; !ok && !strings.HasPrefix(name, "nat-") && !strings.HasPrefix(name, "filter-") {
			t.Fatalf("stale chain %s survived the sync", name)
		}
	}
	for name, m := range next.Maps {
		if fmt.Sprint(got.Maps[name].Elements) != fmt.Sprint(m.Elements) {
			t.Fatalf("map %s after sync: %v, want %v", name, got.Maps[name].Elements, m.Elements)
		}
	}
	for name, set := range next.Sets {
		if fmt.Sprint(got.Sets[name].Elements) != fmt.Sprint(set.Elements) {
			t.Fatalf("set %s after sync: %v, want %v", name, got.Sets[name].Elements, set.Elements)
		}
	}
	return appliedRS{built: next, live: got}
}
