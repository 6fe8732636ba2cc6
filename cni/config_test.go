package cni

import (
	"strings"
	"testing"
)

func TestParseConfig(t *testing.T) {
	c, err := ParseConfig([]byte(`{"cniVersion":"1.1.0","name":"berth","type":"berth-cni","podCIDRs":["10.244.1.0/24","fd00::/64"],"mtu":1450}`))
	if err != nil {
		t.Fatal(err)
	}
	if c.Bridge != DefaultBridge || c.DataDir != DefaultDataDir || len(c.Ranges) != 2 || c.MTU != 1450 {
		t.Fatalf("parsed %+v", c)
	}
	if g := Gateway(c.Ranges[0]); g.String() != "10.244.1.1" {
		t.Errorf("gateway %v", g)
	}
	for in, want := range map[string]string{
		`{`:                            "not valid JSON",
		`{"podCIDRs":["10.0.0.0/24"]}`: `no "name"`,
		`{"name":"n"}`:                 "no podCIDRs",
		`{"name":"n","podCIDRs":["10.0.0.1/24"]}`:                   "host bits",
		`{"name":"n","podCIDRs":["10.0.0.0/24","10.1.0.0/24"]}`:     "one per family",
		`{"name":"n","podCIDRs":["10.0.0.0/31"]}`:                   "too small",
		`{"name":"n","podCIDRs":["banana"]}`:                        `podCIDR "banana"`,
		`{"name":"n","podCIDRs":["10.0.0.0/24"],"bridge":"a/b"}`:    "not a valid interface name",
		`{"name":"n","podCIDRs":["10.0.0.0/24"],"dataDir":"rel"}`:   "absolute",
		`{"name":"n","podCIDRs":["10.0.0.0/24"],"mtu":70000}`:       "576 to 65535",
		`{"name":"n","podCIDRs":["::ffff:10.0.0.0/120"]}`:           "plain IPv4 or IPv6",
		`{"name":"n","podCIDRs":["10.0.0.0/24","a::/64","b::/64"]}`: "one per family",
	} {
		if _, err := ParseConfig([]byte(in)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseConfig(%s) = %v, want an error with %q", in, err, want)
		}
	}
}

// A broken config never panics and never yields an unusable range.
func FuzzParseConfig(f *testing.F) {
	f.Add([]byte(`{"cniVersion":"1.1.0","name":"berth","type":"berth-cni","podCIDRs":["10.244.1.0/24","fd00::/64"],"mtu":1450}`))
	f.Add([]byte(`{"name":"n","podCIDRs":["10.0.0.0/30"],"bridge":"br-x","dataDir":"/x","cni.dev/valid-attachments":[{"containerID":"a","ifname":"eth0"}]}`))
	f.Add([]byte(`{"name":"n","podCIDRs":[""],"prevResult":{"ips":[]}}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		c, err := ParseConfig(raw)
		if err != nil {
			return
		}
		if c.Name == "" || len(c.Ranges) == 0 || len(c.Ranges) > 2 || !ifNameRE.MatchString(c.Bridge) {
			t.Fatalf("accepted an unusable config: %+v", c)
		}
		for _, r := range c.Ranges {
			g := Gateway(r)
			if !r.Contains(g) || !usable(g.Next(), r) {
				t.Fatalf("range %v has no room for a pod", r)
			}
		}
	})
}
