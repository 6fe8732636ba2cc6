package ipam

import (
	"strings"
	"testing"
)

func TestCheckUsable(t *testing.T) {
	for _, tc := range []struct {
		pool string
		want string // "" usable, else a part of the error
	}{
		{"192.0.2.0/24", ""},
		{"198.18.0.0/15", ""},
		{"10.0.0.0/8", ""},
		{"100.64.0.0/10", ""},
		{"1.0.0.0-126.255.255.255", ""},
		{"223.255.255.0/24", ""},
		{"2001:db8::/120", ""},
		{"fd00::/8", ""},
		{"fe7f:ffff::/32", ""},
		{"0.0.0.0/0", "'this network'"},
		{"0.0.0.0/8", "'this network'"},
		{"127.0.0.1-127.0.0.1", "loopback (127.0.0.0/8)"},
		{"126.255.255.250-127.0.0.5", "loopback"},
		{"169.254.10.0/24", "link-local (169.254.0.0/16)"},
		{"224.0.0.0/24", "multicast (224.0.0.0/4)"},
		{"239.255.255.255/32", "multicast"},
		{"255.255.255.255/32", "limited broadcast"},
		{"240.0.0.1-240.0.0.9", "reserved"},
		{"::/0", "the unspecified address"},
		{"::1/128", "loopback (::1)"},
		{"fe80::/64", "link-local (fe80::/10)"},
		{"febf:ffff::/32", "link-local"},
		{"ff02::/16", "multicast (ff00::/8)"},
	} {
		r, err := ParseRange(tc.pool)
		if err != nil {
			t.Fatalf("%s: %v", tc.pool, err)
		}
		err = CheckUsable(r)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s refused: %v", tc.pool, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: %v, want an error saying %q", tc.pool, err, tc.want)
		}
	}
}
