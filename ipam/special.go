package ipam

import (
	"fmt"
	"net/netip"
)

// specialRange is a block of addresses that no LoadBalancer may use: a
// router or host treats packets to them in its own way (RFC 6890 and the
// IANA special-purpose registries), so an address from one would never be
// reached, or would take a host's own traffic.
type specialRange struct {
	prefix netip.Prefix
	what   string
}

// The documentation (192.0.2.0/24, 2001:db8::/32) and benchmarking
// (198.18.0.0/15) blocks are not here: labs and tests use them, and a
// private network may too. Nor is 255.255.255.255 separately: 240.0.0.0/4
// holds it.
var specialRanges = []specialRange{
	{netip.MustParsePrefix("0.0.0.0/8"), "'this network' (0.0.0.0/8)"},
	{netip.MustParsePrefix("127.0.0.0/8"), "loopback (127.0.0.0/8)"},
	{netip.MustParsePrefix("169.254.0.0/16"), "link-local (169.254.0.0/16)"},
	{netip.MustParsePrefix("224.0.0.0/4"), "multicast (224.0.0.0/4)"},
	{netip.MustParsePrefix("240.0.0.0/4"), "reserved and limited broadcast (240.0.0.0/4)"},
	{netip.MustParsePrefix("::/128"), "the unspecified address (::)"},
	{netip.MustParsePrefix("::1/128"), "loopback (::1)"},
	{netip.MustParsePrefix("fe80::/10"), "link-local (fe80::/10)"},
	{netip.MustParsePrefix("ff00::/8"), "multicast (ff00::/8)"},
}

// CheckUsable refuses a range that holds any special-purpose address
// (loopback, link-local, multicast, unspecified, reserved, broadcast):
// 0.0.0.0/0 and 127.0.0.0/24 are mistakes, never pools.
func CheckUsable(r Range) error {
	for _, s := range specialRanges {
		if r.Overlaps(prefixRange(s.prefix)) {
			return fmt.Errorf("%s holds %s addresses, which no LoadBalancer can use: take them out of the pool", r, s.what)
		}
	}
	return nil
}
