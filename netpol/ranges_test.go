package netpol

import (
	"net/netip"
	"testing"

	networkingv1 "k8s.io/api/networking/v1"
)

// checkBlock: the ranges of an ipBlock hold exactly the addresses the
// evaluator's ipBlockContains admits, merged ranges hold what the parts
// hold, and every range reads back from the element nft is given.
func checkBlock(t *testing.T, cidr, except string, probe []byte) {
	b := &networkingv1.IPBlock{CIDR: cidr}
	if except != "" {
		b.Except = []string{except, "10.0.0.0/30"}
	}
	rs := blockRanges(b)
	merged := mergeRanges(append([]addrRange{}, rs...))
	for i := 1; i < len(merged); i++ {
		if !merged[i-1].hi.Next().Less(merged[i].lo) {
			t.Fatalf("merged ranges touch or overlap: %v %v", merged[i-1], merged[i])
		}
	}
	for _, r := range merged {
		back, err := parseRange(r.String())
		if err != nil || back != r {
			t.Fatalf("range %v written %q reads back as %v, %v", r, r.String(), back, err)
		}
	}
	a, ok := netip.AddrFromSlice(probe)
	if !ok {
		return
	}
	in := func(rs []addrRange) bool {
		for _, r := range rs {
			if r.lo.Is4() == a.Is4() && !a.Less(r.lo) && !r.hi.Less(a) {
				return true
			}
		}
		return false
	}
	want := ipBlockContains(b, a)
	if in(rs) != want || in(merged) != want {
		t.Fatalf("ipBlock %s except %v: %s in ranges %v, merged %v; evaluator says %v", cidr, b.Except, a, in(rs), in(merged), want)
	}
}

func FuzzBlockRanges(f *testing.F) {
	for _, s := range []struct {
		cidr, except string
		probe        []byte
	}{
		{"10.0.0.0/16", "10.0.1.0/24", []byte{10, 0, 1, 7}},
		{"10.0.0.0/8", "10.255.255.255/32", []byte{10, 255, 255, 254}},
		{"0.0.0.0/0", "0.0.0.0/1", []byte{128, 0, 0, 0}},
		{"fd00::/64", "fd00::3:0/112", netip.MustParseAddr("fd00::3:5").AsSlice()},
		{"::/0", "::/1", netip.MustParseAddr("ffff::1").AsSlice()},
		{"10.0.0.5/32", "", []byte{10, 0, 0, 5}},
		{"bad", "10.0.0.0/8", []byte{10, 0, 0, 1}},
	} {
		f.Add(s.cidr, s.except, s.probe)
	}
	f.Fuzz(checkBlock)
}

func TestMergeAdjacent(t *testing.T) {
	a := netip.MustParseAddr
	got := mergeRanges([]addrRange{{a("10.0.0.4"), a("10.0.0.7")}, {a("10.0.0.0"), a("10.0.0.3")}, {a("10.0.0.9"), a("10.0.0.9")}, {a("10.0.0.1"), a("10.0.0.2")}})
	if len(got) != 2 || got[0].String() != "10.0.0.0/29" || got[1].String() != "10.0.0.9" {
		t.Errorf("merged: %v", got)
	}
	if s := (addrRange{a("10.0.0.1"), a("10.0.0.6")}).String(); s != "10.0.0.1-10.0.0.6" {
		t.Errorf("range written %q", s)
	}
}
