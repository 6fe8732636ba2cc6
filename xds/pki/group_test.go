package pki

import (
	"net/url"
	"strings"
	"testing"
)

func TestGroupURIRoundTrip(t *testing.T) {
	for _, group := range []string{
		GatewayGroup("default", "web"),
		GatewayGroup("team-a", "gw.example.com"),
		IngressGroup("berth"),
		IngressGroup("public.ingress"),
	} {
		u, err := GroupURI(group)
		if err != nil {
			t.Fatalf("GroupURI(%q): %v", group, err)
		}
		if !strings.HasPrefix(u.String(), GroupURIPrefix) {
			t.Errorf("GroupURI(%q) = %s, want prefix %s", group, u, GroupURIPrefix)
		}
		got, err := ParseGroupURI(u.String())
		if err != nil {
			t.Fatalf("ParseGroupURI(%s): %v", u, err)
		}
		if got != group {
			t.Errorf("round trip %q -> %s -> %q", group, u, got)
		}
	}
	if u, _ := GroupURI("gateway/default/web"); u.String() != "spiffe://berth.dev/group/gateway/default/web" {
		t.Errorf("GroupURI = %s", u)
	}
}

func TestValidateGroupRejects(t *testing.T) {
	for _, group := range []string{
		"", "gateway", "gateway/default", "gateway/default/web/extra", "gateway//web",
		"gateway/Default/web", "gateway/default/", "ingress", "ingress/", "ingress/a/b",
		"ingress/UPPER", "route/default/web", "gateway/a.b/web", "gateway/default/we b",
		"gateway/default/web?x", "ingress/%2F",
	} {
		if err := ValidateGroup(group); err == nil {
			t.Errorf("ValidateGroup(%q) = nil, want an error", group)
		}
		if _, err := GroupURI(group); err == nil {
			t.Errorf("GroupURI(%q) = nil error", group)
		}
	}
}

func TestParseGroupURIRejects(t *testing.T) {
	for _, raw := range []string{
		"",
		"spiffe://berth.dev/group/",
		"spiffe://berth.dev/group/gateway%2Fdefault%2Fweb", // a hidden "/" would make two encodings of one group
		"spiffe://berth.dev:443/group/ingress/berth",
		"spiffe://evil.dev/group/ingress/berth",
		"https://berth.dev/group/ingress/berth",
		"spiffe://user@berth.dev/group/ingress/berth",
		"spiffe://berth.dev/group/ingress/berth?x=1",
		"spiffe://berth.dev/group/ingress/berth#frag",
		"spiffe://berth.dev/groups/ingress/berth",
		"spiffe://berth.dev/group/ingress/%zz",
		"spiffe:berth.dev/group/ingress/berth",
		"spiffe://berth.dev/group/ingress/berth/",
	} {
		if g, err := ParseGroupURI(raw); err == nil {
			t.Errorf("ParseGroupURI(%q) = %q, want an error", raw, g)
		}
	}
}

func FuzzParseGroupURI(f *testing.F) {
	f.Add("spiffe://berth.dev/group/gateway/default/web")
	f.Add("spiffe://berth.dev/group/ingress/berth")
	f.Add("spiffe://berth.dev/group/gateway%2Fdefault%2Fweb")
	f.Add("spiffe://berth.dev/group/ingress/%41")
	f.Fuzz(func(t *testing.T, raw string) {
		group, err := ParseGroupURI(raw)
		if err != nil {
			return
		}
		if err := ValidateGroup(group); err != nil {
			t.Fatalf("ParseGroupURI(%q) = %q, which is invalid: %v", raw, group, err)
		}
		// A parsed group always re-encodes to a URI that parses back to itself.
		u, err := GroupURI(group)
		if err != nil {
			t.Fatalf("GroupURI(%q): %v", group, err)
		}
		again, err := ParseGroupURI(u.String())
		if err != nil || again != group {
			t.Fatalf("re-encode %q -> %s -> %q, %v", group, u, again, err)
		}
		// The group is unambiguous: the URI the parser accepted names the same path.
		if pu, err := url.Parse(raw); err == nil && pu.Path != u.Path {
			t.Fatalf("%q parsed to group %q whose URI path %q differs from %q", raw, group, u.Path, pu.Path)
		}
	})
}
