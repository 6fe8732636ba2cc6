package proxy

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// ruleCompiler turns the rule text Build writes (a fixed vocabulary, in
// nft syntax) into the expressions nft itself would send for it. The kernel
// tests list every rule back with nft and compare it with the text, so the
// two cannot drift apart silently.
type ruleCompiler struct {
	tok []string
	pos int
	// nfproto is the family the rule already matched ("" for none), so
	// the dependency of ip/ip6 matches is emitted once.
	nfproto string
	out     []expr.Any
}

// 32-bit registers: NFT_REG32_00 is the first; a verdict map lookup writes
// the verdict register.
const (
	reg32   = 8
	regVerd = 0
)

func compileRule(rule string) ([]expr.Any, error) {
	c := &ruleCompiler{tok: strings.Fields(rule)}
	if err := c.rule(); err != nil {
		return nil, fmt.Errorf("rule %q: %w", rule, err)
	}
	return c.out, nil
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

func (c *ruleCompiler) rule() error {
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
	case t == "return":
		c.next()
		c.emit(&expr.Verdict{Kind: expr.VerdictReturn})
	case t == "reject":
		c.next()
		c.emit(&expr.Reject{Type: unix.NFT_REJECT_ICMPX_UNREACH, Code: unix.NFT_REJECT_ICMPX_PORT_UNREACH})
	case t == "masquerade":
		c.next()
		if err := c.expect("fully-random"); err != nil {
			return err
		}
		c.emit(&expr.Masq{FullyRandom: true})
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
		p, err := protoNumber(c.next())
		if err != nil {
			return err
		}
		c.emit(&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1}, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{p}})
	case t == "ip" || t == "ip6" || t == "meta" || t == "th":
		return c.lookup()
	case t == "numgen":
		return c.numgen()
	case t == "update":
		return c.update()
	case t == "dnat":
		return c.dnat()
	default:
		return fmt.Errorf("at word %d: %q is not in the proxy's vocabulary", c.pos+1, t)
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

func protoNumber(p string) (byte, error) {
	switch p {
	case "tcp":
		return unix.IPPROTO_TCP, nil
	case "udp":
		return unix.IPPROTO_UDP, nil
	case "sctp":
		return unix.IPPROTO_SCTP, nil
	}
	return 0, fmt.Errorf("protocol %q", p)
}

func hex32(s string) (uint32, error) {
	v, err := strconv.ParseUint(strings.TrimPrefix(s, "0x"), 16, 32)
	return uint32(v), err
}
