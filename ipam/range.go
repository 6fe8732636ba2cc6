// Package ipam is Berth's load-balancer address allocator: pools of
// addresses, Services asking for them, sharing rules, and the guarantee that
// an address once given is not moved while it may still be used. It is plain
// data in and out: no API client, no clock, no metrics.
package ipam

import (
	"fmt"
	"math/big"
	"net/netip"
	"sort"
	"strings"
)

// Family is an IP address family.
type Family int

// The two families.
const (
	IPv4 Family = 4
	IPv6 Family = 6
)

func (f Family) String() string {
	if f == IPv6 {
		return "IPv6"
	}
	return "IPv4"
}

// FamilyOf returns an address's family.
func FamilyOf(a netip.Addr) Family {
	if a.Is4() {
		return IPv4
	}
	return IPv6
}

// Range is an inclusive run of addresses of one family.
type Range struct {
	First, Last netip.Addr
}

// ParseRange reads a CIDR ("192.0.2.0/24") or a range ("192.0.2.10-192.0.2.20").
func ParseRange(s string) (Range, error) {
	s = strings.TrimSpace(s)
	if first, last, ok := strings.Cut(s, "-"); ok {
		a, err := netip.ParseAddr(strings.TrimSpace(first))
		if err != nil {
			return Range{}, fmt.Errorf("range %q: first address: %w", s, err)
		}
		b, err := netip.ParseAddr(strings.TrimSpace(last))
		if err != nil {
			return Range{}, fmt.Errorf("range %q: last address: %w", s, err)
		}
		if a.Zone() != "" || b.Zone() != "" {
			return Range{}, fmt.Errorf("range %q: zones are not allowed", s)
		}
		a, b = a.Unmap(), b.Unmap()
		if a.Is4() != b.Is4() {
			return Range{}, fmt.Errorf("range %q mixes IPv4 and IPv6", s)
		}
		if b.Less(a) {
			return Range{}, fmt.Errorf("range %q: first address is after the last", s)
		}
		return Range{a, b}, nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return Range{}, fmt.Errorf("%q is neither a CIDR nor a first-last range: %w", s, err)
	}
	if p.Addr().Is4In6() {
		return Range{}, fmt.Errorf("CIDR %q: use the IPv4 form", s)
	}
	if p.Masked() != p {
		return Range{}, fmt.Errorf("CIDR %q has host bits set; did you mean %v?", s, p.Masked())
	}
	return prefixRange(p), nil
}

func prefixRange(p netip.Prefix) Range {
	p = p.Masked()
	first := p.Addr()
	b := first.AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 1 << (7 - i%8)
	}
	last, _ := netip.AddrFromSlice(b)
	return Range{First: first, Last: last}
}

// Family is the range's family.
func (r Range) Family() Family { return FamilyOf(r.First) }

// Contains reports whether a is in the range.
func (r Range) Contains(a netip.Addr) bool {
	return a.Is4() == r.First.Is4() && r.First.Compare(a) <= 0 && a.Compare(r.Last) <= 0
}

// Overlaps reports whether two ranges share an address.
func (r Range) Overlaps(o Range) bool {
	return r.First.Is4() == o.First.Is4() && r.First.Compare(o.Last) <= 0 && o.First.Compare(r.Last) <= 0
}

// Intersect returns the common part of two overlapping ranges.
func (r Range) Intersect(o Range) Range {
	first, last := r.First, r.Last
	if o.First.Compare(first) > 0 {
		first = o.First
	}
	if o.Last.Compare(last) < 0 {
		last = o.Last
	}
	return Range{first, last}
}

// Size is the number of addresses in the range.
func (r Range) Size() *big.Int {
	n := new(big.Int).Sub(addrInt(r.Last), addrInt(r.First))
	return n.Add(n, big.NewInt(1))
}

func (r Range) String() string {
	if r.First == r.Last {
		return r.First.String()
	}
	return r.First.String() + "-" + r.Last.String()
}

func addrInt(a netip.Addr) *big.Int { return new(big.Int).SetBytes(a.AsSlice()) }

// normalize sorts ranges and merges those that overlap or touch.
func normalize(rs []Range) []Range {
	out := append([]Range(nil), rs...)
	sort.Slice(out, func(i, j int) bool {
		if out[i].First.Is4() != out[j].First.Is4() {
			return out[i].First.Is4()
		}
		return out[i].First.Less(out[j].First)
	})
	merged := out[:0]
	for _, r := range out {
		if n := len(merged); n > 0 {
			prev := &merged[n-1]
			if prev.First.Is4() == r.First.Is4() && (prev.Overlaps(r) || prev.Last.Next() == r.First) {
				if r.Last.Compare(prev.Last) > 0 {
					prev.Last = r.Last
				}
				continue
			}
		}
		merged = append(merged, r)
	}
	return merged
}

// buggy reports whether an IPv4 address ends in .0 or .255, which some old
// client stacks refuse to use.
func buggy(a netip.Addr) bool {
	if !a.Is4() {
		return false
	}
	last := a.As4()[3]
	return last == 0 || last == 255
}

// countBuggy is how many addresses in an IPv4 range end in .0 or .255.
func countBuggy(r Range) *big.Int {
	if !r.First.Is4() {
		return new(big.Int)
	}
	upTo := func(n int64) int64 { // count in [0, n] (n may be -1)
		if n < 0 {
			return 0
		}
		return n/256 + 1 + (n+1)/256
	}
	lo := addrInt(r.First).Int64()
	hi := addrInt(r.Last).Int64()
	return big.NewInt(upTo(hi) - upTo(lo-1))
}
