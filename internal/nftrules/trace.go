package nftrules

import (
	"bytes"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// Packet is a virtual packet for the Tracer: the first packet of a
// connection unless CtState says otherwise.
type Packet struct {
	Src, Dst netip.Addr
	// Proto is "tcp", "udp", "sctp" or "icmpv6".
	Proto        string
	SPort, DPort uint16
	// ICMPType is the ICMPv6 type, for Proto "icmpv6".
	ICMPType         byte
	IIFName, OIFName string
	Mark             uint32
	// LocalDst is whether Dst is one of the node's own addresses (fib
	// daddr type local).
	LocalDst bool
	// CtState is "new" (when empty), "established", "related",
	// "invalid" or "untracked".
	CtState string
}

// Result is one way a packet leaves a base chain.
type Result struct {
	// Verdict is "accept" (also when it fell off the chain: Berth's base
	// chains accept by policy), "drop" or "reject".
	Verdict string
	// DNAT is where a dnat statement sent it; Masquerade whether a
	// masquerade statement took it.
	DNAT       netip.AddrPort
	Masquerade bool
	// Mark is the packet's mark as it leaves.
	Mark uint32
	// Counters are the named counters it was counted on, in order.
	Counters []string
	// Path lists the rules that matched, as "chain[i]: rule".
	Path []string
}

// Tracer runs virtual packets through a table's rules as the kernel would:
// it runs the very expressions the Netlink backend sends (compiled from
// the rule text), against the sets and maps as the table holds them.
// Random choices (numgen) fork the trace: a packet may have several
// results.
type Tracer struct {
	rs    Ruleset
	sets  map[string]*tracedSet
	rules map[string][]tracedRule
}

type tracedRule struct {
	text string
	c    compiledRule
}

// tracedSet is a set or map with its elements as bytes.
type tracedSet struct {
	t        setType
	interval bool
	elems    []tracedElem
}

type tracedElem struct {
	key   keyRange
	value string // a map's value, as written
}

// NewTracer returns a tracer over a table's content: a Fake's Ruleset,
// or one a test changed as the kernel would (elements of a dynamic set).
func NewTracer(rs Ruleset) (*Tracer, error) {
	t := &Tracer{rs: rs, sets: map[string]*tracedSet{}, rules: map[string][]tracedRule{}}
	add := func(name, typ string, interval bool, elems map[string]string) error {
		st, err := parseSetType(typ)
		if err != nil {
			return err
		}
		ts := &tracedSet{t: st, interval: interval}
		for _, k := range sortedKeys(elems) {
			r, err := st.parseKey(k, interval)
			if err != nil {
				return fmt.Errorf("set %s: %w", name, err)
			}
			ts.elems = append(ts.elems, tracedElem{r, elems[k]})
		}
		t.sets[name] = ts
		return nil
	}
	for name, s := range rs.Sets {
		elems := map[string]string{}
		for _, e := range s.Elements {
			elems[e] = ""
		}
		if err := add(name, s.Type, s.Interval, elems); err != nil {
			return nil, err
		}
	}
	for name, m := range rs.Maps {
		if err := add(name, m.Type, false, m.Elements); err != nil {
			return nil, err
		}
	}
	for name, rules := range rs.Chains {
		for _, r := range rules {
			c, err := compileRule(r)
			if err != nil {
				return nil, err
			}
			t.rules[name] = append(t.rules[name], tracedRule{r, c})
		}
	}
	return t, nil
}

// Elements returns the elements of a set as the table holds them.
func (t *Tracer) Elements(set string) []string { return t.rs.Sets[set].Elements }

// traceState is what a packet carries through the rules.
type traceState struct {
	mark       uint32
	counters   []string
	path       []string
	dnat       netip.AddrPort
	masquerade bool
}

func (s traceState) clone() traceState {
	s.counters, s.path = slices.Clone(s.counters), slices.Clone(s.path)
	return s
}

// outcome is how a chain ends for one fork: verdict "" when it fell off
// its end or returned.
type outcome struct {
	st      traceState
	verdict string
}

// Run traces p from the base chain named chain.
func (t *Tracer) Run(chain string, p Packet) ([]Result, error) {
	if !slices.ContainsFunc(t.rs.Base, func(b BaseChain) bool { return b.Name == chain }) {
		return nil, fmt.Errorf("no base chain %s", chain)
	}
	outs, err := t.chain(chain, &p, traceState{mark: p.Mark}, 0)
	if err != nil {
		return nil, err
	}
	var res []Result
	for _, o := range outs {
		v := o.verdict
		if v == "" {
			v = "accept"
		}
		res = append(res, Result{Verdict: v, DNAT: o.st.dnat, Masquerade: o.st.masquerade, Mark: o.st.mark, Counters: o.st.counters, Path: o.st.path})
	}
	return res, nil
}

func (t *Tracer) chain(name string, p *Packet, st traceState, depth int) ([]outcome, error) {
	if depth > 16 {
		return nil, fmt.Errorf("chain %s: jumps nest deeper than 16", name)
	}
	if _, ok := t.rs.Chains[name]; !ok {
		return nil, fmt.Errorf("packet reached missing chain %s", name)
	}
	return t.from(name, 0, p, st, depth)
}

// from runs the rules of a chain from the i-th.
func (t *Tracer) from(name string, i int, p *Packet, st traceState, depth int) ([]outcome, error) {
	rules := t.rules[name]
	if i >= len(rules) {
		return []outcome{{st: st}}, nil
	}
	r := rules[i]
	ends, err := t.rule(r, p, st)
	if err != nil {
		return nil, fmt.Errorf("chain %s rule %d %q: %w", name, i, r.text, err)
	}
	var out []outcome
	for _, e := range ends {
		if e.verdict != "" {
			e.st.path = append(e.st.path, fmt.Sprintf("%s[%d]: %s", name, i, r.text))
		}
		verb, target, _ := strings.Cut(e.verdict, " ")
		var more []outcome
		switch verb {
		case "", "continue":
			more, err = t.from(name, i+1, p, e.st, depth)
		case "accept", "drop", "reject":
			more = []outcome{{e.st, verb}}
		case "return":
			more = []outcome{{st: e.st}}
		case "goto":
			more, err = t.chain(target, p, e.st, depth+1)
		case "jump":
			var sub []outcome
			if sub, err = t.chain(target, p, e.st, depth+1); err == nil {
				for _, s := range sub {
					if s.verdict != "" {
						more = append(more, s)
						continue
					}
					rest, err2 := t.from(name, i+1, p, s.st, depth)
					if err2 != nil {
						return nil, err2
					}
					more = append(more, rest...)
				}
			}
		default:
			err = fmt.Errorf("verdict %q", e.verdict)
		}
		if err != nil {
			return nil, err
		}
		out = append(out, more...)
	}
	return out, nil
}

// ruleEnd is how a rule ends for one fork: verdict "" when a match failed
// (on to the next rule), "continue" when all its statements ran without
// a verdict.
type ruleEnd struct {
	st      traceState
	verdict string
}

// registers are the kernel's: the verdict register (16 bytes), then four
// 16-byte registers that are also sixteen 32-bit ones.
type registers [80]byte

func regOffset(r uint32) int {
	if r <= 4 {
		return int(r) * 16
	}
	return 16 + int(r-reg32)*4
}

func (t *Tracer) rule(r tracedRule, p *Packet, st traceState) ([]ruleEnd, error) {
	anon := map[*expr.Lookup]anonSet{}
	for i, l := range r.c.lookups {
		anon[l] = r.c.anon[i]
	}
	var regs registers
	return t.exprs(r.c.exprs, anon, p, &regs, st.clone())
}

func (t *Tracer) exprs(es []expr.Any, anon map[*expr.Lookup]anonSet, p *Packet, regs *registers, st traceState) ([]ruleEnd, error) {
	net4 := p.Dst.Unmap().Is4()
	for k, e := range es {
		switch e := e.(type) {
		case *expr.Meta:
			if e.SourceRegister {
				if e.Key != expr.MetaKeyMARK {
					return nil, fmt.Errorf("meta set %v", e.Key)
				}
				st.mark = binaryutil.NativeEndian.Uint32(regs[regOffset(e.Register):])
				continue
			}
			var v []byte
			switch e.Key {
			case expr.MetaKeyNFPROTO:
				v = []byte{unix.NFPROTO_IPV6}
				if net4 {
					v = []byte{unix.NFPROTO_IPV4}
				}
			case expr.MetaKeyL4PROTO:
				n, err := protoNumber(p.Proto)
				if err != nil {
					return nil, err
				}
				v = []byte{n}
			case expr.MetaKeyMARK:
				v = binaryutil.NativeEndian.PutUint32(st.mark)
			case expr.MetaKeyIIFNAME, expr.MetaKeyOIFNAME:
				v = make([]byte, unix.IFNAMSIZ)
				name := p.IIFName
				if e.Key == expr.MetaKeyOIFNAME {
					name = p.OIFName
				}
				copy(v, name)
			default:
				return nil, fmt.Errorf("meta key %v", e.Key)
			}
			copy(regs[regOffset(e.Register):], v)
		case *expr.Payload:
			h := transportHeader(p)
			if e.Base == expr.PayloadBaseNetworkHeader {
				h = networkHeader(p)
			} else if e.Base != expr.PayloadBaseTransportHeader {
				return nil, fmt.Errorf("payload base %v", e.Base)
			}
			if int(e.Offset+e.Len) > len(h) {
				return nil, fmt.Errorf("payload @%d+%d past the header", e.Offset, e.Len)
			}
			copy(regs[regOffset(e.DestRegister):], h[e.Offset:e.Offset+e.Len])
		case *expr.Cmp:
			got := regs[regOffset(e.Register):][:len(e.Data)]
			c := bytes.Compare(got, e.Data)
			ok := map[expr.CmpOp]bool{expr.CmpOpEq: c == 0, expr.CmpOpNeq: c != 0, expr.CmpOpLt: c < 0, expr.CmpOpLte: c <= 0, expr.CmpOpGt: c > 0, expr.CmpOpGte: c >= 0}[e.Op]
			if !ok {
				return []ruleEnd{{st: st}}, nil
			}
		case *expr.Range:
			got := regs[regOffset(e.Register):][:len(e.FromData)]
			in := bytes.Compare(got, e.FromData) >= 0 && bytes.Compare(got, e.ToData) <= 0
			if in != (e.Op == expr.CmpOpEq) {
				return []ruleEnd{{st: st}}, nil
			}
		case *expr.Bitwise:
			src, dst := regOffset(e.SourceRegister), regOffset(e.DestRegister)
			for i := range int(e.Len) {
				regs[dst+i] = regs[src+i]&e.Mask[i] ^ e.Xor[i]
			}
		case *expr.Immediate:
			copy(regs[regOffset(e.Register):], e.Data)
		case *expr.Ct:
			if e.Key != expr.CtKeySTATE || e.SourceRegister {
				return nil, fmt.Errorf("ct key %v", e.Key)
			}
			state := p.CtState
			if state == "" {
				state = "new"
			}
			copy(regs[regOffset(e.Register):], binaryutil.NativeEndian.PutUint32(ctStates[state]))
		case *expr.Fib:
			typ := uint32(unix.RTN_UNICAST)
			if p.LocalDst {
				typ = unix.RTN_LOCAL
			}
			copy(regs[regOffset(e.Register):], binaryutil.NativeEndian.PutUint32(typ))
		case *expr.Lookup:
			verdict, matched, err := t.lookup(e, anon, regs)
			if err != nil {
				return nil, err
			}
			if !matched {
				return []ruleEnd{{st: st}}, nil
			}
			if verdict != "" {
				return []ruleEnd{{st, verdict}}, nil
			}
		case *expr.Numgen:
			var out []ruleEnd
			for v := e.Offset; v < e.Offset+e.Modulus; v++ {
				fork := *regs
				copy(fork[regOffset(e.Register):], binaryutil.NativeEndian.PutUint32(v))
				ends, err := t.exprs(es[k+1:], anon, p, &fork, st.clone())
				if err != nil {
					return nil, err
				}
				out = append(out, ends...)
			}
			return out, nil
		case *expr.Objref:
			if e.Type != unix.NFT_OBJECT_COUNTER {
				return nil, fmt.Errorf("object type %d", e.Type)
			}
			st.counters = append(st.counters, e.Name)
		case *expr.Dynset:
			// The kernel records the key; one traced packet needs nothing.
		case *expr.Verdict:
			return []ruleEnd{{st, verdictText(e)}}, nil
		case *expr.NAT:
			if e.Type != expr.NATTypeDestNAT {
				return nil, fmt.Errorf("nat type %v", e.Type)
			}
			n := 4
			if e.Family == unix.NFPROTO_IPV6 {
				n = 16
			}
			if (e.Family == unix.NFPROTO_IPV4) != net4 {
				// The kernel skips a NAT of the other family.
				continue
			}
			a, _ := netip.AddrFromSlice(regs[regOffset(e.RegAddrMin):][:n])
			port := binaryutil.BigEndian.Uint16(regs[regOffset(e.RegProtoMin):])
			st.dnat = netip.AddrPortFrom(a, port)
			return []ruleEnd{{st, "accept"}}, nil
		case *expr.Masq:
			st.masquerade = true
			return []ruleEnd{{st, "accept"}}, nil
		case *expr.Reject:
			return []ruleEnd{{st, "reject"}}, nil
		default:
			return nil, fmt.Errorf("the tracer does not run %T", e)
		}
	}
	return []ruleEnd{{st, "continue"}}, nil
}

// lookup looks the key in the registers up in a set or map; a verdict
// map's answer is the verdict.
func (t *Tracer) lookup(e *expr.Lookup, anon map[*expr.Lookup]anonSet, regs *registers) (string, bool, error) {
	src := regOffset(e.SourceRegister)
	if a, ok := anon[e]; ok {
		key := regs[src:][:a.keyType.Bytes]
		found := slices.ContainsFunc(a.keys, func(k []byte) bool { return bytes.Equal(k, key) })
		return "", found != e.Invert, nil
	}
	s, ok := t.sets[e.SetName]
	if !ok {
		return "", false, fmt.Errorf("no set %s", e.SetName)
	}
	// Field lengths as the key lays them out.
	var lens []int
	for _, f := range s.t.key {
		n := int(f.Bytes)
		if len(s.t.key) > 1 {
			n = (n + 3) &^ 3
		}
		lens = append(lens, n)
	}
	total := 0
	for _, n := range lens {
		total += n
	}
	key := regs[src:][:total]
	var hit *tracedElem
	for i := range s.elems {
		el := &s.elems[i]
		in, off := true, 0
		for j, n := range lens {
			// Each part on its own: a concatenation of ranges matches
			// when every part is in its range.
			width := int(s.t.key[j].Bytes)
			part := key[off : off+width]
			if bytes.Compare(part, el.key.lo[off:off+width]) < 0 || bytes.Compare(part, el.key.hi[off:off+width]) > 0 {
				in = false
				break
			}
			off += n
		}
		if in {
			hit = el
			break
		}
	}
	if e.Invert {
		return "", hit == nil, nil
	}
	if hit == nil {
		return "", false, nil
	}
	if !e.IsDestRegSet {
		return "", true, nil
	}
	if s.t.verdict {
		return hit.value, true, nil
	}
	data, err := s.t.parseData(hit.value)
	if err != nil {
		return "", false, err
	}
	copy(regs[regOffset(e.DestRegister):], data)
	return "", true, nil
}

func verdictText(v *expr.Verdict) string {
	switch v.Kind {
	case expr.VerdictAccept:
		return "accept"
	case expr.VerdictDrop:
		return "drop"
	case expr.VerdictReturn:
		return "return"
	case expr.VerdictJump:
		return "jump " + v.Chain
	case expr.VerdictGoto:
		return "goto " + v.Chain
	}
	return "continue"
}

// networkHeader is the packet's IPv4 or IPv6 header, as far as rules read
// it.
func networkHeader(p *Packet) []byte {
	proto, _ := protoNumber(p.Proto)
	src, dst := p.Src.Unmap(), p.Dst.Unmap()
	if dst.Is4() {
		h := make([]byte, 20)
		h[0], h[9] = 0x45, proto
		copy(h[12:], src.AsSlice())
		copy(h[16:], dst.AsSlice())
		return h
	}
	h := make([]byte, 40)
	h[0], h[6] = 0x60, proto
	copy(h[8:], src.AsSlice())
	copy(h[24:], dst.AsSlice())
	return h
}

// transportHeader is the first 8 bytes of the TCP, UDP, SCTP or ICMPv6
// header.
func transportHeader(p *Packet) []byte {
	h := make([]byte, 8)
	if p.Proto == "icmpv6" {
		h[0] = p.ICMPType
		return h
	}
	copy(h, binaryutil.BigEndian.PutUint16(p.SPort))
	copy(h[2:], binaryutil.BigEndian.PutUint16(p.DPort))
	return h
}
