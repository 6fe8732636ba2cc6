package nftrules

import (
	"bytes"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// fieldTypes are the nft types sets and maps may hold.
var fieldTypes = map[string]nftables.SetDatatype{
	"ipv4_addr":    nftables.TypeIPAddr,
	"ipv6_addr":    nftables.TypeIP6Addr,
	"inet_proto":   nftables.TypeInetProto,
	"inet_service": nftables.TypeInetService,
	"integer":      nftables.TypeInteger,
	"icmpv6_type":  nftables.TypeICMP6Type,
}

// setType is a set's or map's type, parsed: "ipv4_addr . inet_service",
// or "ipv4_addr : verdict" for a map.
type setType struct {
	key, data []nftables.SetDatatype
	isMap     bool
	verdict   bool
}

func parseFields(t string) ([]nftables.SetDatatype, error) {
	var out []nftables.SetDatatype
	for _, f := range strings.Split(t, " . ") {
		ft, ok := fieldTypes[strings.TrimSpace(f)]
		if !ok {
			return nil, fmt.Errorf("type %q is not one of ipv4_addr, ipv6_addr, inet_proto, inet_service, integer, icmpv6_type", f)
		}
		out = append(out, ft)
	}
	return out, nil
}

func parseSetType(t string) (setType, error) {
	var st setType
	keyT, dataT, isMap := strings.Cut(t, " : ")
	var err error
	if st.key, err = parseFields(keyT); err != nil {
		return st, err
	}
	st.isMap = isMap
	if isMap {
		if strings.TrimSpace(dataT) == "verdict" {
			st.verdict = true
		} else if st.data, err = parseFields(dataT); err != nil {
			return st, err
		}
	}
	return st, nil
}

// keyRange is an element's key as bytes: from lo to hi, both included
// (equal for a single value). Parts of a concatenation are padded to 4
// bytes each, as the kernel lays out registers.
type keyRange struct{ lo, hi []byte }

// parseKey encodes "10.96.0.10 . udp . 53"; with interval, each part may
// also be a CIDR ("10.0.0.0/24") or a range ("80-90", "10.0.1.1-10.0.1.9").
func (t setType) parseKey(key string, interval bool) (keyRange, error) {
	return encodeParts(t.key, key, interval)
}

// parseData encodes a map's data value ("10.244.1.5 . 8080").
func (t setType) parseData(v string) ([]byte, error) {
	r, err := encodeParts(t.data, v, false)
	return r.lo, err
}

func encodeParts(fields []nftables.SetDatatype, key string, interval bool) (keyRange, error) {
	parts := strings.Split(key, " . ")
	if len(parts) != len(fields) {
		return keyRange{}, fmt.Errorf("element %q has %d parts, the type %d", key, len(parts), len(fields))
	}
	var r keyRange
	for i, f := range fields {
		lo, hi, err := encodeField(f, strings.TrimSpace(parts[i]), interval)
		if err != nil {
			return keyRange{}, fmt.Errorf("element %q: %w", key, err)
		}
		if len(fields) > 1 {
			for len(lo)%4 != 0 {
				lo, hi = append(lo, 0), append(hi, 0)
			}
		}
		r.lo, r.hi = append(r.lo, lo...), append(r.hi, hi...)
	}
	return r, nil
}

// encodeField encodes one part of a key: a value, or with interval a CIDR
// or a range, as its first and last value.
func encodeField(f nftables.SetDatatype, s string, interval bool) (lo, hi []byte, err error) {
	if interval {
		if p, err := netip.ParsePrefix(s); err == nil && (f.Name == "ipv4_addr" || f.Name == "ipv6_addr") {
			if p.Addr().Is4() != (f.Name == "ipv4_addr") {
				return nil, nil, fmt.Errorf("%q is not an %s", s, f.Name)
			}
			p = p.Masked()
			lo = p.Addr().AsSlice()
			hi = slices.Clone(lo)
			bits := len(hi)*8 - p.Bits()
			for i := len(hi) - 1; i >= 0 && bits > 0; i-- {
				take := min(bits, 8)
				hi[i] |= byte(1<<take - 1)
				bits -= take
			}
			return lo, hi, nil
		}
		// A range: the dash is not part of any value of these types.
		if a, b, ok := strings.Cut(s, "-"); ok {
			if lo, err = encodeValue(f, a); err != nil {
				return nil, nil, err
			}
			if hi, err = encodeValue(f, b); err != nil {
				return nil, nil, err
			}
			if bytes.Compare(lo, hi) > 0 {
				return nil, nil, fmt.Errorf("range %q ends before it starts", s)
			}
			return lo, hi, nil
		}
	}
	lo, err = encodeValue(f, s)
	return lo, lo, err
}

// encodeValue encodes one value of a type, as the kernel compares it.
func encodeValue(f nftables.SetDatatype, s string) ([]byte, error) {
	switch f.Name {
	case "ipv4_addr", "ipv6_addr":
		a, err := netip.ParseAddr(s)
		if err != nil || a.Is4() != (f.Name == "ipv4_addr") {
			return nil, fmt.Errorf("%q is not an %s", s, f.Name)
		}
		return a.AsSlice(), nil
	case "integer":
		v, err := strconv.ParseUint(s, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("%q is not an integer", s)
		}
		return binaryutil.NativeEndian.PutUint32(uint32(v)), nil
	case "inet_proto":
		p, err := protoNumber(s)
		if err != nil {
			return nil, err
		}
		return []byte{p}, nil
	case "inet_service":
		p, err := strconv.ParseUint(s, 10, 16)
		if err != nil {
			return nil, fmt.Errorf("port %q is not a number from 0 to 65535", s)
		}
		return binaryutil.BigEndian.PutUint16(uint16(p)), nil
	case "icmpv6_type":
		t, ok := icmpv6Types[s]
		if !ok {
			return nil, fmt.Errorf("icmpv6 type %q", s)
		}
		return []byte{t}, nil
	}
	return nil, fmt.Errorf("type %s", f.Name)
}

// icmpv6Types are the ICMPv6 types rules may name.
var icmpv6Types = map[string]byte{
	"echo-request": 128, "echo-reply": 129,
	"nd-router-solicit": 133, "nd-router-advert": 134, "nd-neighbor-solicit": 135, "nd-neighbor-advert": 136,
}

// parseVerdict reads a map's verdict value: "goto X", "jump X", "return",
// "accept", "drop".
func parseVerdict(v string) (*expr.Verdict, error) {
	kind, chain, _ := strings.Cut(v, " ")
	switch kind {
	case "goto":
		return &expr.Verdict{Kind: expr.VerdictGoto, Chain: chain}, nil
	case "jump":
		return &expr.Verdict{Kind: expr.VerdictJump, Chain: chain}, nil
	case "return":
		return &expr.Verdict{Kind: expr.VerdictReturn}, nil
	case "accept":
		return &expr.Verdict{Kind: expr.VerdictAccept}, nil
	case "drop":
		return &expr.Verdict{Kind: expr.VerdictDrop}, nil
	}
	return nil, fmt.Errorf("verdict %q is not goto, jump, return, accept or drop", v)
}

// intervals turns ranges of one field into the kernel's interval
// elements: sorted starts and ends (one past the range), an end at zero
// when nothing starts there (as nft does), no end past the last value,
// and overlapping or adjacent ranges joined.
func intervals(rs []keyRange) []nftables.SetElement {
	type rng struct{ start, end []byte } // end nil: to the last value
	var all []rng
	for _, r := range rs {
		end := slices.Clone(r.hi)
		carry := true
		for i := len(end) - 1; i >= 0 && carry; i-- {
			end[i]++
			carry = end[i] == 0
		}
		if carry {
			end = nil
		}
		all = append(all, rng{r.lo, end})
	}
	slices.SortFunc(all, func(a, b rng) int { return bytes.Compare(a.start, b.start) })
	var merged []rng
	for _, r := range all {
		if len(merged) > 0 {
			last := &merged[len(merged)-1]
			if last.end == nil || bytes.Compare(r.start, last.end) <= 0 {
				if last.end != nil && (r.end == nil || bytes.Compare(r.end, last.end) > 0) {
					last.end = r.end
				}
				continue
			}
		}
		merged = append(merged, r)
	}
	var out []nftables.SetElement
	if len(merged) > 0 && strings.Trim(string(merged[0].start), "\x00") != "" {
		out = append(out, nftables.SetElement{Key: make([]byte, len(merged[0].start)), IntervalEnd: true})
	}
	for _, r := range merged {
		out = append(out, nftables.SetElement{Key: r.start})
		if r.end != nil {
			out = append(out, nftables.SetElement{Key: r.end, IntervalEnd: true})
		}
	}
	return out
}

func protoNumber(p string) (byte, error) {
	switch p {
	case "tcp":
		return unix.IPPROTO_TCP, nil
	case "udp":
		return unix.IPPROTO_UDP, nil
	case "sctp":
		return unix.IPPROTO_SCTP, nil
	case "icmp":
		return unix.IPPROTO_ICMP, nil
	case "icmpv6":
		return unix.IPPROTO_ICMPV6, nil
	}
	return 0, fmt.Errorf("protocol %q is not tcp, udp, sctp, icmp or icmpv6", p)
}
