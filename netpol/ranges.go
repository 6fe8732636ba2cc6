package netpol

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	networkingv1 "k8s.io/api/networking/v1"
)

// addrRange is the addresses from lo to hi, both included, of one family.
type addrRange struct{ lo, hi netip.Addr }

// lastAddr is the highest address of a prefix.
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().AsSlice()
	host := len(b)*8 - p.Bits()
	for i := len(b) - 1; i >= 0 && host > 0; i-- {
		take := min(host, 8)
		b[i] |= byte(1<<take - 1)
		host -= take
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// blockRanges is an ipBlock as ranges: cidr minus except, for the
// evaluator's reading (an unparsable cidr matches nothing, an unparsable
// except excludes nothing).
func blockRanges(b *networkingv1.IPBlock) []addrRange {
	cidr, err := netip.ParsePrefix(b.CIDR)
	if err != nil {
		return nil
	}
	cidr = cidr.Masked()
	out := []addrRange{{cidr.Addr(), lastAddr(cidr)}}
	for _, ex := range b.Except {
		p, err := netip.ParsePrefix(ex)
		if err != nil || p.Addr().Is4() != cidr.Addr().Is4() {
			continue
		}
		out = subtract(out, addrRange{p.Masked().Addr(), lastAddr(p)})
	}
	return out
}

// subtract removes cut from every range of rs.
func subtract(rs []addrRange, cut addrRange) []addrRange {
	var out []addrRange
	for _, r := range rs {
		if cut.hi.Less(r.lo) || r.hi.Less(cut.lo) {
			out = append(out, r)
			continue
		}
		if r.lo.Less(cut.lo) {
			out = append(out, addrRange{r.lo, cut.lo.Prev()})
		}
		if cut.hi.Less(r.hi) {
			out = append(out, addrRange{cut.hi.Next(), r.hi})
		}
	}
	return out
}

// mergeRanges sorts ranges and joins those that overlap or touch, so that
// an interval set gets disjoint elements (nft refuses overlaps).
func mergeRanges(rs []addrRange) []addrRange {
	slices.SortFunc(rs, func(a, b addrRange) int { return a.lo.Compare(b.lo) })
	var out []addrRange
	for _, r := range rs {
		if n := len(out); n > 0 {
			last := &out[n-1]
			next := last.hi.Next()
			if !next.IsValid() || !next.Less(r.lo) { // overlaps or touches
				if last.hi.Less(r.hi) {
					last.hi = r.hi
				}
				continue
			}
		}
		out = append(out, r)
	}
	return out
}

// String writes a range as nft does: one address, a prefix, or lo-hi.
func (r addrRange) String() string {
	if r.lo == r.hi {
		return r.lo.String()
	}
	for bits := r.lo.BitLen(); bits >= 0; bits-- {
		p := netip.PrefixFrom(r.lo, bits)
		if p.Masked().Addr() != r.lo {
			break
		}
		if lastAddr(p) == r.hi {
			return p.String()
		}
		if r.hi.Less(lastAddr(p)) {
			break
		}
	}
	return r.lo.String() + "-" + r.hi.String()
}

// parseRange reads an element String wrote.
func parseRange(s string) (addrRange, error) {
	if lo, hi, ok := strings.Cut(s, "-"); ok {
		l, err1 := netip.ParseAddr(lo)
		h, err2 := netip.ParseAddr(hi)
		if err1 != nil || err2 != nil || h.Less(l) {
			return addrRange{}, fmt.Errorf("range %q", s)
		}
		return addrRange{l, h}, nil
	}
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return addrRange{}, err
		}
		return addrRange{p.Masked().Addr(), lastAddr(p)}, nil
	}
	a, err := netip.ParseAddr(s)
	return addrRange{a, a}, err
}

// portSpan is the ports lo to hi of one protocol ("tcp").
type portSpan struct {
	proto  string
	lo, hi int32
}

// mergePorts sorts port ranges and joins those of one protocol that
// overlap or touch, and writes them as nft concatenation elements
// ("tcp . 80", "udp . 81-90").
func mergePorts(ps []portSpan) []string {
	slices.SortFunc(ps, func(a, b portSpan) int {
		if c := strings.Compare(a.proto, b.proto); c != 0 {
			return c
		}
		return int(a.lo - b.lo)
	})
	var merged []portSpan
	for _, p := range ps {
		if n := len(merged); n > 0 && merged[n-1].proto == p.proto && p.lo <= merged[n-1].hi+1 {
			merged[n-1].hi = max(merged[n-1].hi, p.hi)
			continue
		}
		merged = append(merged, p)
	}
	out := make([]string, len(merged))
	for i, p := range merged {
		port := strconv.Itoa(int(p.lo))
		if p.hi != p.lo {
			port += "-" + strconv.Itoa(int(p.hi))
		}
		out[i] = p.proto + " . " + port
	}
	return out
}
