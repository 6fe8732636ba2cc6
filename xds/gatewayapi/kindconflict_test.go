package gatewayapi

import "testing"

// TestHostClaims: a hostname conflicts with a claim when the two
// intersect: equal, one wildcard admitting the other, or either any host.
func TestHostClaims(t *testing.T) {
	for _, tc := range []struct {
		claimed []string
		host    string
		want    bool
	}{
		{nil, "a.example.com", false},
		{[]string{"a.example.com"}, "a.example.com", true},
		{[]string{"a.example.com"}, "b.example.com", false},
		{[]string{"a.example.com"}, "*.example.com", true},
		{[]string{"a.b.example.com"}, "*.example.com", true},
		{[]string{"a.example.com"}, "*.b.example.com", false},
		{[]string{"*.example.com"}, "a.example.com", true},
		{[]string{"*.example.com"}, "a.b.example.com", true},
		{[]string{"*.example.com"}, "example.com", false},
		{[]string{"example.com"}, "*.example.com", false},
		{[]string{"*.example.com"}, "*.example.com", true},
		{[]string{"*.example.com"}, "*.a.example.com", true},
		{[]string{"*.a.example.com"}, "*.example.com", true},
		{[]string{"*.a.example.com"}, "*.b.example.com", false},
		{[]string{"*.com"}, "x.example.com", true},
		{[]string{""}, "a.example.com", true},
		{[]string{"a.example.com"}, "", true},
		{[]string{"other.org", "*.example.net"}, "a.example.com", false},
	} {
		var c hostClaims
		for _, h := range tc.claimed {
			c.claim(h, "HTTPRoute/ns/r")
		}
		if got := c.conflict(tc.host) != ""; got != tc.want {
			t.Errorf("claimed %q, host %q: conflict %v, want %v", tc.claimed, tc.host, got, tc.want)
		}
	}
}
