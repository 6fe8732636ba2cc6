package ipam

import (
	"net/netip"
	"strings"
	"testing"
)

// FuzzParseRange: a pool's range string either gives a clear error or a
// range of one family, without zones or IPv4-mapped forms, first <= last,
// that reads back the same from its first-last form; a CIDR gives exactly
// its prefix's addresses.
func FuzzParseRange(f *testing.F) {
	for _, s := range []string{"192.0.2.0/30", " 192.0.2.7 - 192.0.2.9 ", "2001:db8::/127", "192.0.2.5/32",
		"::ffff:192.0.2.1-::ffff:192.0.2.9", "::ffff:192.0.2.0/120", "fe80::1%eth0-fe80::2", "fe80::%eth0/64",
		"192.0.2.1/24", "192.0.2.9-192.0.2.1", "192.0.2.1-2001:db8::1", "-", "0.0.0.0/0", "::/0", "banana"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseRange(s)
		if err != nil {
			if err.Error() == "" {
				t.Fatalf("ParseRange(%q): an empty error", s)
			}
			return
		}
		for _, a := range []netip.Addr{r.First, r.Last} {
			if !a.IsValid() || a.Zone() != "" || a.Is4In6() {
				t.Fatalf("ParseRange(%q) = %v: address %v is not a plain one", s, r, a)
			}
		}
		if r.First.Is4() != r.Last.Is4() || r.Last.Less(r.First) {
			t.Fatalf("ParseRange(%q) = %v: not one family, first to last", s, r)
		}
		back, err := ParseRange(r.First.String() + "-" + r.Last.String())
		if err != nil || back != r {
			t.Fatalf("ParseRange(%q) = %v; its first-last form reads back as %v, %v", s, r, back, err)
		}
		if p, err := netip.ParsePrefix(strings.TrimSpace(s)); err == nil {
			if r.First != p.Addr() || !p.Contains(r.Last) || (r.Last.Next().IsValid() && p.Contains(r.Last.Next())) {
				t.Fatalf("ParseRange(%q) = %v: not the prefix's addresses", s, r)
			}
		}
	})
}
