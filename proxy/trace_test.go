package proxy

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// The tracer follows a virtual packet through the rules as applied to the
// fake backend, so the tests assert behaviour ("to 10.96.0.10:53/udp from
// pod A goes to B or C, not masqueraded") of the very rule text that would
// reach the kernel, not of the builder's intent.

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

// trace returns every outcome the packet may have (random balancing forks).
func trace(t *testing.T, rs Ruleset, p packet) []outcome {
	t.Helper()
	// Filter hooks first: Services without endpoints reject.
	if out, ok := run(t, rs, "filter-"+p.hook, p, outcome{}); ok && len(out) > 0 && out[0].verdict == "reject" {
		return out
	}
	out, ok := run(t, rs, "nat-"+p.hook, p, outcome{})
	if !ok {
		return []outcome{{verdict: "accept"}}
	}
	var final []outcome
	for _, o := range out {
		if o.verdict == "" {
			o.verdict = "accept"
		}
		// nat-postrouting: a packet DNATed back to its sender (hairpin)
		// is masqueraded.
		if o.verdict == "dnat" {
			target := o.to[:strings.LastIndex(o.to, ":")]
			set := "hairpin"
			if p.src.Is6() {
				set = "hairpin6"
			}
			if slices.Contains(rs.Sets[set].Elements, p.src.String()+" . "+strings.Trim(target, "[]")) {
				o.masq = true
			}
		}
		final = append(final, o)
	}
	sort.Slice(final, func(i, j int) bool { return final[i].String() < final[j].String() })
	return final
}

// run evaluates a chain. ok is false when the packet falls off its end.
func run(t *testing.T, rs Ruleset, chain string, p packet, st outcome) ([]outcome, bool) {
	t.Helper()
	rules, exists := rs.Chains[chain]
	if !exists {
		t.Fatalf("packet reached missing chain %s", chain)
	}
	return runRules(t, rs, chain, rules, p, st)
}

// runRules evaluates rules in order.
func runRules(t *testing.T, rs Ruleset, chain string, rules []string, p packet, st outcome) ([]outcome, bool) {
	t.Helper()
	fam := "ip"
	if p.dst.Is6() {
		fam = "ip6"
	}
	for i, r := range rules {
		f := strings.Fields(r)
		if f[0] == "meta" && f[1] == "nfproto" {
			// "meta nfproto ipv4 ...": the rest applies to that family.
			if f[2] != map[string]string{"ip": "ipv4", "ip6": "ipv6"}[fam] {
				continue
			}
			f = f[3:]
			r = strings.Join(f, " ")
		}
		if f[0] == "numgen" {
			// "numgen random mod K 0 REST": REST for some new connections,
			// the next rules for the others; the tracer follows both.
			taken, ok := runRules(t, rs, chain, []string{strings.Join(f[5:], " ")}, p, st)
			if !ok {
				continue
			}
			rest, ok := runRules(t, rs, chain, rules[i+1:], p, st)
			if !ok {
				rest = []outcome{st}
			}
			return append(taken, rest...), true
		}
		switch {
		case r == "jump services":
			if out, ok := run(t, rs, "services", p, st); ok {
				return out, true
			}
		case strings.HasSuffix(r, "vmap @"+f[len(f)-1][1:]) && strings.Contains(r, "th dport vmap @"):
			m := f[len(f)-1][1:]
			var key string
			switch {
			case strings.HasPrefix(r, "fib daddr type local "+fam+" daddr @"):
				// "fib daddr type local ip daddr @nodeport-cidrs meta ..."
				if !p.local || !inSet(rs, f[6][1:], p.dst) {
					continue
				}
				key = fmt.Sprintf("%s . %d", p.proto, p.dport)
			case f[0] == fam:
				key = fmt.Sprintf("%s . %s . %d", p.dst, p.proto, p.dport)
			default:
				continue
			}
			v, ok := rs.Maps[m].Elements[key]
			if !ok {
				continue
			}
			return follow(t, rs, v, p, st), true
		case strings.HasPrefix(r, "goto "):
			return follow(t, rs, r, p, st), true
		case len(f) == 6 && f[1] == "saddr" && f[2] == "!=" && f[4] == "jump":
			// "ip saddr != @set jump mark-for-masquerade"
			if f[0] != fam {
				continue
			}
			if !inSet(rs, strings.TrimPrefix(f[3], "@"), p.src) {
				st.masq = true
			}
		case r == "jump mark-for-masquerade":
			st.masq = true
		case strings.HasPrefix(r, "meta l4proto ") && strings.Contains(r, " dnat "):
			// "meta l4proto tcp dnat ip to A:P"; the kernel skips the
			// DNAT of the other family.
			if f[2] != p.proto || f[4] != fam {
				continue
			}
			if f[6] != "numgen" {
				st.verdict, st.to = "dnat", f[len(f)-1]
				return []outcome{st}, true
			}
			// "... dnat ip to numgen random mod N offset O map @M"
			n, _ := strconv.Atoi(f[9])
			off, _ := strconv.Atoi(f[11])
			var all []outcome
			for i := range n {
				v, ok := rs.Maps[f[13][1:]].Elements[strconv.Itoa(off+i)]
				if !ok {
					t.Fatalf("%s: no element %d in %s", r, off+i, f[13])
				}
				a, port, _ := strings.Cut(v, " . ")
				pn, _ := strconv.Atoi(port)
				o := st
				o.verdict, o.to = "dnat", netip.AddrPortFrom(netip.MustParseAddr(a), uint16(pn)).String()
				all = append(all, o)
			}
			return all, true
		case r == "reject":
			return []outcome{{verdict: "reject"}}, true
		case len(f) == 5 && f[1] == "saddr" && strings.HasPrefix(f[2], "@") && f[3] == "goto":
			// "ip saddr @affinity-X goto ep-X": a returning client.
			if f[0] == fam && inSet(rs, f[2][1:], p.src) {
				return follow(t, rs, "goto "+f[4], p, st), true
			}
		case strings.HasPrefix(r, "update @"):
			// The kernel records the client; the tracer follows one packet.
		case strings.HasPrefix(r, "meta mark"), strings.HasPrefix(r, "masquerade"), strings.Contains(r, " daddr @hairpin"):
		default:
			t.Fatalf("tracer does not know rule %q in %s", r, chain)
		}
	}
	return nil, false
}

func follow(t *testing.T, rs Ruleset, verdict string, p packet, st outcome) []outcome {
	t.Helper()
	target := strings.TrimPrefix(strings.TrimPrefix(verdict, "goto "), "jump ")
	out, ok := run(t, rs, target, p, st)
	if !ok {
		return []outcome{st}
	}
	return out
}

func inSet(rs Ruleset, set string, a netip.Addr) bool {
	for _, e := range rs.Sets[set].Elements {
		if p, err := netip.ParsePrefix(e); err == nil && p.Contains(a) {
			return true
		}
	}
	return false
}

// applied builds the state, applies it to the fake (fully, or as a diff
// from prev), and checks that the fake then holds exactly what a full build
// would. appliedRS is a ruleset as built and as the fake holds it.
type appliedRS struct {
	built, live Ruleset
}

func applied(t *testing.T, f *fakeBackend, prev *appliedRS, st State) appliedRS {
	t.Helper()
	next := Build(st)
	tx := &Tx{}
	var p *Ruleset
	if prev != nil {
		p = &prev.built
	}
	Sync(tx, p, next)
	if err := f.Apply(context.Background(), tx); err != nil {
		t.Fatalf("apply: %v\n%s", err, tx)
	}
	got := f.ruleset()
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
