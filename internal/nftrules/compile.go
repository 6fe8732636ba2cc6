package nftrules

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// ruleCompiler turns rule text (a fixed vocabulary, in nft syntax) into
// the expressions nft itself would send for it. The kernel tests list
// every rule back with nft and compare it with the text, so the two
// cannot drift apart silently. The vocabulary:
//
//	verdicts      accept, drop, return, jump C, goto C, reject,
//	              masquerade [fully-random]
//	matches       ip|ip6 saddr|daddr @S, != @S, vmap @M, with . to
//	              concatenate them with meta l4proto and th dport;
//	              meta l4proto P [th dport N[-M]]; tcp|udp|sctp dport N[-M];
//	              meta nfproto ipv4|ipv6; iifname|oifname "X";
//	              ct state S[,S]; icmpv6 type { T, ... };
//	              fib daddr type local; meta mark & M == V; numgen random mod N V
//	statements    counter name "X"; meta mark set meta mark (|^) M;
//	              update @S { ip saddr }; dnat ip|ip6 to A:P | to numgen
//	              random mod N offset O map @M
//	comment "X"   at the end: the rule's comment
type ruleCompiler struct {
	tok []string
	pos int
	// nfproto is the family the rule already matched ("" for none), so
	// the dependency of ip/ip6 matches is emitted once; l4proto likewise.
	nfproto, l4proto string
	out              []expr.Any
	rule             compiledRule
}

// compiledRule is a rule's expressions, the anonymous sets it looks up
// (lookups[i] looks up anon[i]; the backend names them) and its comment.
type compiledRule struct {
	exprs   []expr.Any
	anon    []anonSet
	lookups []*expr.Lookup
	comment string
}

// anonSet is a constant set written in the rule ("{ a, b }").
type anonSet struct {
	keyType nftables.SetDatatype
	keys    [][]byte
}

// 32-bit registers: NFT_REG32_00 is the first; a verdict map lookup writes
// the verdict register.
const (
	reg32   = 8
	regVerd = 0
)

func compileRule(rule string) (compiledRule, error) {
	c := &ruleCompiler{tok: fields(rule)}
	if err := c.all(); err != nil {
		return compiledRule{}, fmt.Errorf("rule %q: %w", rule, err)
	}
	c.rule.exprs = c.out
	return c.rule, nil
}

// fields splits rule text into words; a quoted string is one word, quotes
// included.
func fields(s string) []string {
	var out []string
	for {
		s = strings.TrimLeft(s, " \t")
		if s == "" {
			return out
		}
		if s[0] == '"' {
			end := strings.IndexByte(s[1:], '"')
			if end < 0 {
				return append(out, s)
			}
			out = append(out, s[:end+2])
			s = s[end+2:]
			continue
		}
		end := strings.IndexAny(s, " \t")
		if end < 0 {
			return append(out, s)
		}
		out = append(out, s[:end])
		s = s[end:]
	}
}

// unquote strips a word's quotes.
func unquote(w string) string {
	if len(w) >= 2 && w[0] == '"' && w[len(w)-1] == '"' {
		return w[1 : len(w)-1]
	}
	return w
}

func (c *ruleCompiler) peek(n int) string {
	if c.pos+n < len(c.tok) {
		return c.tok[c.pos+n]
	}
	return ""
}

func (c *ruleCompiler) next() string {
	t := c.peek(0)
	c.pos++
	return t
}

func (c *ruleCompiler) expect(words ...string) error {
	for _, w := range words {
		if got := c.next(); got != w {
			return fmt.Errorf("at word %d: %q, want %q", c.pos, got, w)
		}
	}
	return nil
}

func (c *ruleCompiler) emit(e ...expr.Any) { c.out = append(c.out, e...) }

func (c *ruleCompiler) all() error {
	for c.pos < len(c.tok) {
		if err := c.statement(); err != nil {
			return err
		}
	}
	return nil
}

func (c *ruleCompiler) statement() error {
	switch t := c.peek(0); {
	case t == "jump" || t == "goto":
		c.next()
		kind := expr.VerdictJump
		if t == "goto" {
			kind = expr.VerdictGoto
		}
		c.emit(&expr.Verdict{Kind: kind, Chain: c.next()})
	case t == "return" || t == "accept" || t == "drop":
		c.next()
		c.emit(&expr.Verdict{Kind: map[string]expr.VerdictKind{"return": expr.VerdictReturn, "accept": expr.VerdictAccept, "drop": expr.VerdictDrop}[t]})
	case t == "comment":
		c.next()
		w := c.next()
		if !strings.HasPrefix(w, `"`) || c.pos != len(c.tok) {
			return fmt.Errorf("comment: want one quoted string at the end of the rule")
		}
		if c.rule.comment = unquote(w); len(c.rule.comment) > 128 {
			return fmt.Errorf("comment of %d bytes: nft takes at most 128", len(c.rule.comment))
		}
	case t == "counter":
		if err := c.expect("counter", "name"); err != nil {
			return err
		}
		c.emit(&expr.Objref{Type: unix.NFT_OBJECT_COUNTER, Name: unquote(c.next())})
	case t == "ct":
		return c.ctState()
	case t == "iifname" || t == "oifname":
		c.next()
		name := unquote(c.next())
		if len(name) >= unix.IFNAMSIZ || name == "" {
			return fmt.Errorf("%s %q: not an interface name", t, name)
		}
		key := expr.MetaKeyIIFNAME
		if t == "oifname" {
			key = expr.MetaKeyOIFNAME
		}
		data := make([]byte, unix.IFNAMSIZ)
		copy(data, name)
		c.emit(&expr.Meta{Key: key, Register: 1}, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: data})
	case t == "icmpv6":
		return c.icmpv6()
	case (t == "tcp" || t == "udp" || t == "sctp") && c.peek(1) == "dport":
		c.next()
		if err := c.proto(t); err != nil {
			return err
		}
		return c.dport()
	case t == "th" && c.peek(1) == "dport" && c.peek(2) != ".":
		if c.l4proto == "" {
			return fmt.Errorf("th dport: match meta l4proto first")
		}
		c.next()
		return c.dport()
	case t == "reject":
		c.next()
		c.emit(&expr.Reject{Type: unix.NFT_REJECT_ICMPX_UNREACH, Code: unix.NFT_REJECT_ICMPX_PORT_UNREACH})
	case t == "masquerade":
		c.next()
		m := &expr.Masq{}
		if c.peek(0) == "fully-random" {
			c.next()
			m.FullyRandom = true
		}
		c.emit(m)
	case t == "fib":
		if err := c.expect("fib", "daddr", "type", "local"); err != nil {
			return err
		}
		c.emit(&expr.Fib{Register: 1, FlagDADDR: true, ResultADDRTYPE: true},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(unix.RTN_LOCAL)})
	case t == "meta" && c.peek(1) == "mark":
		return c.mark()
	case t == "meta" && c.peek(1) == "nfproto":
		c.pos += 2
		fam := c.next()
		return c.family(map[string]string{"ipv4": "ip", "ipv6": "ip6"}[fam])
	case t == "meta" && c.peek(1) == "l4proto" && c.peek(2) != ".":
		c.pos += 2
		return c.proto(c.next())
	case t == "ip" || t == "ip6" || t == "meta" || t == "th":
		return c.lookup()
	case t == "numgen":
		return c.numgen()
	case t == "update":
		return c.update()
	case t == "dnat":
		return c.dnat()
	default:
		return fmt.Errorf("at word %d: %q is not in the vocabulary (see internal/nftrules/compile.go)", c.pos+1, t)
	}
	return nil
}

// family matches the packet's family once per rule (what nft adds before
// an ip or ip6 match in an inet table).
func (c *ruleCompiler) family(fam string) error {
	var v byte
	switch fam {
	case "ip":
		v = unix.NFPROTO_IPV4
	case "ip6":
		v = unix.NFPROTO_IPV6
	default:
		return fmt.Errorf("unknown family %q", fam)
	}
	if c.nfproto == fam {
		return nil
	}
	c.nfproto = fam
	c.emit(&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1}, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{v}})
	return nil
}

// proto matches the transport protocol once per rule.
func (c *ruleCompiler) proto(name string) error {
	p, err := protoNumber(name)
	if err != nil {
		return err
	}
	if c.l4proto == name {
		return nil
	}
	if c.l4proto != "" {
		return fmt.Errorf("a rule matches one protocol, not %s and %s", c.l4proto, name)
	}
	c.l4proto = name
	c.emit(&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1}, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{p}})
	return nil
}

// dport is "dport N" or "dport N-M" (the word before was the protocol
// or th).
func (c *ruleCompiler) dport() error {
	if err := c.expect("dport"); err != nil {
		return err
	}
	w := c.next()
	lo, hi, isRange := strings.Cut(w, "-")
	l, err1 := strconv.ParseUint(lo, 10, 16)
	h, err2 := l, error(nil)
	if isRange {
		h, err2 = strconv.ParseUint(hi, 10, 16)
	}
	if err1 != nil || err2 != nil || h < l {
		return fmt.Errorf("dport %q: want a port or a range of ports", w)
	}
	c.emit(&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2})
	if !isRange {
		c.emit(&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(uint16(l))})
		return nil
	}
	c.emit(&expr.Range{Op: expr.CmpOpEq, Register: 1, FromData: binaryutil.BigEndian.PutUint16(uint16(l)), ToData: binaryutil.BigEndian.PutUint16(uint16(h))})
	return nil
}

// ctState is "ct state S[,S]...": any of the states.
func (c *ruleCompiler) ctState() error {
	if err := c.expect("ct", "state"); err != nil {
		return err
	}
	w := c.next()
	var mask uint32
	for _, st := range strings.Split(w, ",") {
		bit, ok := ctStates[st]
		if !ok {
			return fmt.Errorf("ct state %q: want invalid, established, related, new or untracked", st)
		}
		mask |= bit
	}
	c.emit(&expr.Ct{Key: expr.CtKeySTATE, Register: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: binaryutil.NativeEndian.PutUint32(mask), Xor: binaryutil.NativeEndian.PutUint32(0)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(0)})
	return nil
}

// ctStates are the kernel's conntrack state bits (NF_CT_STATE_BIT).
var ctStates = map[string]uint32{"invalid": 1, "established": 2, "related": 4, "new": 8, "untracked": 64}

// icmpv6 is "icmpv6 type { T, ... }", looked up in an anonymous set.
func (c *ruleCompiler) icmpv6() error {
	if err := c.expect("icmpv6", "type", "{"); err != nil {
		return err
	}
	if err := c.family("ip6"); err != nil {
		return err
	}
	if err := c.proto("icmpv6"); err != nil {
		return err
	}
	a := anonSet{keyType: nftables.TypeICMP6Type}
	for {
		w := strings.TrimSuffix(c.next(), ",")
		if w == "}" {
			break
		}
		if w == "" {
			return fmt.Errorf("icmpv6 type: want }")
		}
		v, ok := icmpv6Types[w]
		if !ok {
			return fmt.Errorf("icmpv6 type %q", w)
		}
		a.keys = append(a.keys, []byte{v})
	}
	l := &expr.Lookup{SourceRegister: 1}
	c.rule.anon, c.rule.lookups = append(c.rule.anon, a), append(c.rule.lookups, l)
	c.emit(&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 1}, l)
	return nil
}

// field loads one part of a concatenation into the 32-bit register reg and
// returns how many registers it takes.
func (c *ruleCompiler) field(reg uint32) (uint32, error) {
	switch t := c.next(); t {
	case "ip", "ip6":
		if err := c.family(t); err != nil {
			return 0, err
		}
		off, n := uint32(12), uint32(4)
		if t == "ip6" {
			off, n = 8, 16
		}
		switch c.next() {
		case "saddr":
		case "daddr":
			off += n
		default:
			return 0, fmt.Errorf("at word %d: want saddr or daddr", c.pos)
		}
		c.emit(&expr.Payload{DestRegister: reg, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: n})
		return n / 4, nil
	case "meta":
		if err := c.expect("l4proto"); err != nil {
			return 0, err
		}
		c.emit(&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg})
		return 1, nil
	case "th":
		if err := c.expect("dport"); err != nil {
			return 0, err
		}
		c.emit(&expr.Payload{DestRegister: reg, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2})
		return 1, nil
	default:
		return 0, fmt.Errorf("at word %d: %q is not a field", c.pos, t)
	}
}

// lookup is "FIELD [. FIELD]... (@set | != @set | vmap @map)".
func (c *ruleCompiler) lookup() error {
	reg := uint32(reg32)
	for {
		n, err := c.field(reg)
		if err != nil {
			return err
		}
		reg += n
		if c.peek(0) != "." {
			break
		}
		c.next()
	}
	l := &expr.Lookup{SourceRegister: reg32}
	switch t := c.next(); {
	case t == "vmap":
		l.DestRegister, l.IsDestRegSet = regVerd, true
		t = c.next()
		l.SetName = strings.TrimPrefix(t, "@")
	case t == "!=":
		l.Invert = true
		l.SetName = strings.TrimPrefix(c.next(), "@")
	case strings.HasPrefix(t, "@"):
		l.SetName = t[1:]
	default:
		return fmt.Errorf("at word %d: %q, want a set", c.pos, t)
	}
	c.emit(l)
	return nil
}

// mark is "meta mark & M == V" or "meta mark set meta mark (^|) M".
func (c *ruleCompiler) mark() error {
	c.pos += 2
	load := &expr.Meta{Key: expr.MetaKeyMARK, Register: 1}
	switch c.next() {
	case "&":
		m, err := hex32(c.next())
		if err != nil {
			return err
		}
		if err := c.expect("=="); err != nil {
			return err
		}
		v, err := hex32(c.next())
		if err != nil {
			return err
		}
		c.emit(load,
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: binaryutil.NativeEndian.PutUint32(m), Xor: binaryutil.NativeEndian.PutUint32(0)},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(v)})
	case "set":
		if err := c.expect("meta", "mark"); err != nil {
			return err
		}
		op := c.next()
		m, err := hex32(c.next())
		if err != nil {
			return err
		}
		mask, xor := ^uint32(0), m
		if op == "|" {
			mask = ^m
		} else if op != "^" {
			return fmt.Errorf("mark operator %q", op)
		}
		c.emit(load,
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: binaryutil.NativeEndian.PutUint32(mask), Xor: binaryutil.NativeEndian.PutUint32(xor)},
			&expr.Meta{Key: expr.MetaKeyMARK, SourceRegister: true, Register: 1})
	default:
		return fmt.Errorf("meta mark: unknown form")
	}
	return nil
}

// update is "update @set { ip saddr }".
func (c *ruleCompiler) update() error {
	c.next()
	set := strings.TrimPrefix(c.next(), "@")
	if err := c.expect("{"); err != nil {
		return err
	}
	if _, err := c.field(reg32); err != nil {
		return err
	}
	if err := c.expect("}"); err != nil {
		return err
	}
	c.emit(&expr.Dynset{SrcRegKey: reg32, SetName: set, Operation: uint32(unix.NFT_DYNSET_OP_UPDATE)})
	return nil
}

// numgen is "numgen random mod N V": a fresh random number below N,
// matched against V.
func (c *ruleCompiler) numgen() error {
	if err := c.expect("numgen", "random", "mod"); err != nil {
		return err
	}
	n, err := strconv.ParseUint(c.next(), 10, 32)
	if err != nil || n < 1 {
		return fmt.Errorf("numgen modulus: %v", err)
	}
	v, err := strconv.ParseUint(c.next(), 10, 32)
	if err != nil {
		return fmt.Errorf("numgen value: %v", err)
	}
	c.emit(&expr.Numgen{Register: 1, Modulus: uint32(n), Type: unix.NFT_NG_RANDOM},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(uint32(v))})
	return nil
}

// dnat is "dnat ip to A:P", "dnat ip6 to [A]:P", or either family "to
// numgen random mod N offset O map @M" (M's data: address . port).
func (c *ruleCompiler) dnat() error {
	c.next()
	fam := c.next()
	nat := &expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: 1, RegProtoMin: 2, Specified: true}
	if fam == "ip6" {
		nat.Family = unix.NFPROTO_IPV6
	} else if fam != "ip" {
		return fmt.Errorf("dnat family %q", fam)
	}
	if err := c.expect("to"); err != nil {
		return err
	}
	if c.peek(0) == "numgen" {
		if err := c.expect("numgen", "random", "mod"); err != nil {
			return err
		}
		n, err := strconv.ParseUint(c.next(), 10, 32)
		if err != nil || n < 1 {
			return fmt.Errorf("numgen modulus: %v", err)
		}
		if err := c.expect("offset"); err != nil {
			return err
		}
		off, err := strconv.ParseUint(c.next(), 10, 32)
		if err != nil {
			return fmt.Errorf("numgen offset: %v", err)
		}
		if err := c.expect("map"); err != nil {
			return err
		}
		set := strings.TrimPrefix(c.next(), "@")
		// The address fills register 1 (4 or 16 bytes); the port follows
		// in the next 32-bit register.
		nat.RegProtoMin = reg32 + 1
		if fam == "ip6" {
			nat.RegProtoMin = reg32 + 4
		}
		nat.Specified = false
		c.emit(&expr.Numgen{Register: 1, Modulus: uint32(n), Type: unix.NFT_NG_RANDOM, Offset: uint32(off)},
			&expr.Lookup{SourceRegister: 1, DestRegister: 1, IsDestRegSet: true, SetName: set}, nat)
		return nil
	}
	ap, err := netip.ParseAddrPort(c.next())
	if err != nil {
		return err
	}
	if ap.Addr().Is6() != (fam == "ip6") {
		return fmt.Errorf("dnat %s to %s", fam, ap)
	}
	c.emit(&expr.Immediate{Register: 1, Data: ap.Addr().AsSlice()},
		&expr.Immediate{Register: 2, Data: binaryutil.BigEndian.PutUint16(ap.Port())}, nat)
	return nil
}

func hex32(s string) (uint32, error) {
	v, err := strconv.ParseUint(strings.TrimPrefix(s, "0x"), 16, 32)
	return uint32(v), err
}
