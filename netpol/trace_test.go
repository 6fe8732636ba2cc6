package netpol

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"sigs.k8s.io/knftables"
)

// packet is a new connection's first packet, as the tracer sees it.
type packet struct {
	src, dst netip.Addr
	proto    string // "tcp", "udp", "sctp"
	dport    int
}

// tracer runs packets through the rules of a knftables.Fake the way the
// kernel would: it reads the rule text the syncer sent (the vocabulary of
// ruleset.go and compile.go; anything else fails the trace) and follows
// jumps, gotos, verdict maps and set lookups. The packet is always a new
// connection's, so established/related never matches.
type tracer struct {
	table *knftables.FakeTable
	// path lists the rules that matched, as "chain[i]: rule", and the
	// counters the packet was counted on.
	path     []string
	counters []string
}

func newTracer(f *knftables.Fake) *tracer { return &tracer{table: f.Table} }

// run traces p from a base chain; the answer is "accept" or "drop"
// (the base chains' policy is accept).
func (t *tracer) run(base string, p packet) (string, error) {
	t.path, t.counters = nil, nil
	v, err := t.chain(base, p, 0)
	if err != nil {
		return "", err
	}
	if v == "drop" {
		return "drop", nil
	}
	return "accept", nil
}

// chain runs one chain; it returns "accept", "drop" or "" (fell off the end
// or returned).
func (t *tracer) chain(name string, p packet, depth int) (string, error) {
	if depth > 16 {
		return "", fmt.Errorf("chain %s: jumps nest too deep", name)
	}
	c, ok := t.table.Chains[name]
	if !ok {
		return "", fmt.Errorf("no chain %s", name)
	}
	for i, r := range c.Rules {
		v, matched, err := t.rule(r.Rule, p)
		if err != nil {
			return "", fmt.Errorf("chain %s rule %d %q: %w", name, i, r.Rule, err)
		}
		if !matched {
			continue
		}
		t.path = append(t.path, fmt.Sprintf("%s[%d]: %s", name, i, r.Rule))
		switch verb, target, _ := strings.Cut(v, " "); verb {
		case "":
		case "accept", "drop":
			return verb, nil
		case "return":
			return "", nil
		case "jump":
			if v, err := t.chain(target, p, depth+1); err != nil || v != "" {
				return v, err
			}
		case "goto":
			return t.chain(target, p, depth+1)
		default:
			return "", fmt.Errorf("verdict %q", v)
		}
	}
	return "", nil
}

// rule evaluates one rule: whether all its matches hold and, if so, its
// verdict ("" for none).
func (t *tracer) rule(text string, p packet) (string, bool, error) {
	if strings.HasPrefix(text, "ct state ") || strings.HasPrefix(text, "icmpv6 type ") || strings.HasPrefix(text, "iif ") {
		return "", false, nil // a new TCP/UDP/SCTP packet from a pod's or another node's link
	}
	tok := strings.Fields(text)
	var counted []string
	for i := 0; i < len(tok); {
		switch w := tok[i]; {
		case w == "accept" || w == "drop" || w == "return":
			t.counters = append(t.counters, counted...)
			return w, true, nil
		case w == "jump" || w == "goto":
			return w + " " + tok[i+1], true, nil
		case w == "counter":
			if tok[i+1] != "name" {
				return "", false, fmt.Errorf("counter %q", tok[i+1])
			}
			counted = append(counted, strings.Trim(tok[i+2], `"`))
			i += 3
		case w == "ip" || w == "ip6":
			if (w == "ip") != p.src.Is4() {
				return "", false, nil
			}
			addr := p.src
			if tok[i+1] == "daddr" {
				addr = p.dst
			}
			if tok[i+2] == "." { // ip daddr . meta l4proto . th dport @set
				key := []string{addr.String(), p.proto, strconv.Itoa(p.dport)}
				ok, err := t.inSet(strings.TrimPrefix(tok[i+8], "@"), key)
				if err != nil || !ok {
					return "", false, err
				}
				i += 9
				continue
			}
			if tok[i+2] == "vmap" {
				m, ok := t.table.Maps[strings.TrimPrefix(tok[i+3], "@")]
				if !ok {
					return "", false, fmt.Errorf("no map %s", tok[i+3])
				}
				if e := m.FindElement(addr.String()); e != nil {
					return e.Value[0], true, nil
				}
				return "", false, nil
			}
			ok, err := t.inSet(strings.TrimPrefix(tok[i+2], "@"), []string{addr.String()})
			if err != nil || !ok {
				return "", false, err
			}
			i += 3
		case w == "meta" && tok[i+1] == "l4proto" && tok[i+2] == ".": // meta l4proto . th dport @set
			set, ok := t.table.Sets[strings.TrimPrefix(tok[i+5], "@")]
			if !ok {
				return "", false, fmt.Errorf("no set %s", tok[i+5])
			}
			var elems []string
			for _, e := range set.Elements {
				elems = append(elems, strings.Join(e.Key, " . "))
			}
			ok, err := inPortSet(elems, p)
			if err != nil || !ok {
				return "", false, err
			}
			i += 6
		case w == "meta" && tok[i+1] == "l4proto": // meta l4proto tcp [th dport 80[-81]]
			if tok[i+2] != p.proto {
				return "", false, nil
			}
			i += 3
			if i < len(tok) && tok[i] == "th" {
				ok, err := inPortSet([]string{p.proto + " . " + tok[i+2]}, p)
				if err != nil || !ok {
					return "", false, err
				}
				i += 3
			}
		default:
			return "", false, fmt.Errorf("word %q is not in the vocabulary", w)
		}
	}
	return "", true, nil
}

// inSet looks a key up in a named set, by address range in an interval
// set, by equality otherwise.
func (t *tracer) inSet(name string, key []string) (bool, error) {
	s, ok := t.table.Sets[name]
	if !ok {
		return false, fmt.Errorf("no set %s", name)
	}
	if !slices.Contains(s.Set.Flags, knftables.IntervalFlag) {
		return s.FindElement(key...) != nil, nil
	}
	a, err := netip.ParseAddr(key[0])
	if err != nil {
		return false, err
	}
	for _, e := range s.Elements {
		r, err := parseRange(e.Key[0])
		if err != nil {
			return false, err
		}
		if !a.Less(r.lo) && !r.hi.Less(a) {
			return true, nil
		}
	}
	return false, nil
}

// inPortSet matches "tcp . 80", "udp . 81-90" elements.
func inPortSet(elems []string, p packet) (bool, error) {
	for _, e := range elems {
		proto, ports, ok := strings.Cut(strings.TrimSpace(e), " . ")
		if !ok {
			return false, fmt.Errorf("port element %q", e)
		}
		lo, hi, isRange := strings.Cut(ports, "-")
		if !isRange {
			hi = lo
		}
		l, err1 := strconv.Atoi(lo)
		h, err2 := strconv.Atoi(hi)
		if err1 != nil || err2 != nil {
			return false, fmt.Errorf("port element %q", e)
		}
		if proto == p.proto && l <= p.dport && p.dport <= h {
			return true, nil
		}
	}
	return false, nil
}
