package ipam

import (
	"net/netip"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/labels"
)

func mustRanges(t testing.TB, specs ...string) []Range {
	t.Helper()
	out := make([]Range, len(specs))
	for i, s := range specs {
		r, err := ParseRange(s)
		if err != nil {
			t.Fatal(err)
		}
		out[i] = r
	}
	return out
}

func pool(t testing.TB, name string, specs ...string) Pool {
	return Pool{Name: name, Ranges: mustRanges(t, specs...), AutoAssign: true}
}

func svc(key string) Request {
	ns, _, _ := strings.Cut(key, "/")
	return Request{Key: key, Namespace: ns, Ports: []Port{{"TCP", 80}}}
}

func ip(s string) netip.Addr { return netip.MustParseAddr(s) }

// harness runs steps on one allocator and checks the invariants after each.
type harness struct {
	t *testing.T
	a *Allocator
}

func newHarness(t *testing.T, cfg Config) *harness {
	h := &harness{t: t, a: New()}
	if err := h.a.SetConfig(cfg); err != nil {
		t.Fatal(err)
	}
	return h
}

func (h *harness) check() {
	h.t.Helper()
	if err := h.a.Check(); err != nil {
		h.t.Fatalf("invariant broken: %v", err)
	}
}

// assign wants the Service to end with exactly the given addresses.
func (h *harness) assign(req Request, want ...string) Result {
	h.t.Helper()
	res, err := h.a.Assign(req)
	if err != nil {
		h.t.Fatalf("assign %s: %v", req.Key, err)
	}
	h.wantAddrs(req.Key, res.IPs, want...)
	h.check()
	return res
}

// refuse wants the request refused with reason, and the Service left with
// no address.
func (h *harness) refuse(req Request, reason string) *Error {
	h.t.Helper()
	_, err := h.a.Assign(req)
	e, ok := err.(*Error)
	if !ok || e.Reason != reason {
		h.t.Fatalf("assign %s: got %v, want a %s error", req.Key, err, reason)
	}
	if got := h.a.Assigned(req.Key); len(got) != 0 {
		h.t.Fatalf("refused %s still holds %v", req.Key, got)
	}
	h.check()
	return e
}

func (h *harness) wantAddrs(key string, got []Assigned, want ...string) {
	h.t.Helper()
	var gs []string
	for _, g := range got {
		gs = append(gs, g.Addr.String())
	}
	if strings.Join(gs, ",") != strings.Join(want, ",") {
		h.t.Fatalf("%s: addresses %v, want %v", key, gs, want)
	}
}

// restart replaces the allocator with a new one restored from the current
// assignments, as a controller restart does from Service status.
func (h *harness) restart(cfg Config, reqs ...Request) {
	h.t.Helper()
	old := h.a
	h.a = New()
	if err := h.a.SetConfig(cfg); err != nil {
		h.t.Fatal(err)
	}
	for _, r := range reqs {
		var addrs []netip.Addr
		for _, x := range old.Assigned(r.Key) {
			addrs = append(addrs, x.Addr)
		}
		if len(addrs) == 0 {
			continue
		}
		if err := h.a.Restore(r, addrs); err != nil {
			h.t.Fatalf("restore %s: %v", r.Key, err)
		}
	}
	h.check()
}

func TestAssignSequence(t *testing.T) {
	cfg := Config{Pools: []Pool{pool(t, "lan", "192.0.2.0/29")}}
	h := newHarness(t, cfg)
	s1, s2, s3 := svc("a/s1"), svc("a/s2"), svc("b/s3")

	h.assign(s1, "192.0.2.0")
	// s2 cannot take s1's address.
	s2.IPs = []netip.Addr{ip("192.0.2.0")}
	if e := h.refuse(s2, ReasonIPInUse); !strings.Contains(e.Message, "a/s1") {
		t.Errorf("refusal does not name the holder: %s", e.Message)
	}
	s2.IPs = nil
	h.assign(s2, "192.0.2.1")
	// Re-assigning changes nothing.
	if res := h.assign(s1, "192.0.2.0"); res.Changed {
		t.Error("re-assign reported a change")
	}
	// Restart: restore, then a new Service takes the next free address and
	// the restored ones keep theirs.
	h.restart(cfg, s1, s2)
	h.assign(s3, "192.0.2.2")
	h.assign(s1, "192.0.2.0")
	h.assign(s2, "192.0.2.1")
	// Released addresses are handed out again, lowest first.
	h.a.Release(s1.Key)
	h.check()
	h.assign(svc("c/s4"), "192.0.2.0")
}

func TestPoolEditsNeverMoveAddresses(t *testing.T) {
	cfg := Config{Pools: []Pool{pool(t, "old", "192.0.2.0/28")}}
	h := newHarness(t, cfg)
	s1, s2 := svc("a/s1"), svc("a/s2")
	h.assign(s1, "192.0.2.0")
	h.assign(s2, "192.0.2.1")

	// A new pool that comes first in order does not pull s1 over.
	fresh := pool(t, "fresh", "198.51.100.0/28")
	fresh.Priority, fresh.HasPriority = 1, true
	cfg = Config{Pools: []Pool{cfg.Pools[0], fresh}}
	if err := h.a.SetConfig(cfg); err != nil {
		t.Fatal(err)
	}
	h.assign(s1, "192.0.2.0")
	h.assign(svc("a/s3"), "198.51.100.0")

	// Shrinking the pool so that s2's address leaves every pool: s2 keeps
	// it, with a warning.
	shrunk := pool(t, "old", "192.0.2.0/32")
	if err := h.a.SetConfig(Config{Pools: []Pool{shrunk, fresh}}); err != nil {
		t.Fatal(err)
	}
	res := h.assign(s2, "192.0.2.1")
	if len(res.Warnings) != 1 || res.Warnings[0].Reason != ReasonOutsidePools {
		t.Fatalf("warnings %v, want one %s", res.Warnings, ReasonOutsidePools)
	}
	if res.IPs[0].Pool != "" {
		t.Errorf("address outside pools is attributed to %q", res.IPs[0].Pool)
	}
	h.assign(s1, "192.0.2.0")

	// Deleting the pool entirely: the same.
	if err := h.a.SetConfig(Config{Pools: []Pool{fresh}}); err != nil {
		t.Fatal(err)
	}
	h.assign(s1, "192.0.2.0")
}

func TestRequests(t *testing.T) {
	manual := pool(t, "manual", "203.0.113.0/30")
	manual.AutoAssign = false
	h := newHarness(t, Config{Pools: []Pool{pool(t, "auto", "192.0.2.0/30"), manual}})

	// autoAssign false: never picked automatically ...
	h.assign(svc("a/plain"), "192.0.2.0")
	// ... but served to Services that name it or one of its addresses.
	byPool := svc("a/bypool")
	byPool.Pool = "manual"
	h.assign(byPool, "203.0.113.0")
	byIP := svc("a/byip")
	byIP.IPs = []netip.Addr{ip("203.0.113.3")}
	h.assign(byIP, "203.0.113.3")

	unknown := svc("a/unknown")
	unknown.Pool = "nope"
	h.refuse(unknown, ReasonUnknownPool)
	outside := svc("a/outside")
	outside.IPs = []netip.Addr{ip("10.0.0.1")}
	h.refuse(outside, ReasonIPNotInPool)
	// An address from another pool than the one asked for is refused.
	both := svc("a/both")
	both.Pool = "auto"
	both.IPs = []netip.Addr{ip("203.0.113.2")}
	h.refuse(both, ReasonPoolNotAllowed)

	// Changing the request moves the Service to what it now asks for.
	byIP.IPs = []netip.Addr{ip("203.0.113.2")}
	h.assign(byIP, "203.0.113.2")
	// Asking for an address that is taken leaves the Service with none,
	// never with another.
	byIP.IPs = []netip.Addr{ip("203.0.113.0")}
	h.refuse(byIP, ReasonIPInUse)
}

func TestSelectorsAndPriority(t *testing.T) {
	team := pool(t, "team", "192.0.2.0/30")
	team.Namespaces = []string{"team"}
	team.Priority, team.HasPriority = 1, true
	gold := pool(t, "gold", "198.51.100.0/30")
	gold.ServiceSelector = labels.SelectorFromSet(labels.Set{"tier": "gold"})
	gold.Priority, gold.HasPriority = 2, true
	prod := pool(t, "prod", "203.0.113.0/30")
	sel, err := labels.Parse("env in (prod)")
	if err != nil {
		t.Fatal(err)
	}
	prod.NamespaceSelector = sel
	h := newHarness(t, Config{Pools: []Pool{prod, gold, team}})

	h.assign(svc("team/a"), "192.0.2.0")
	g := svc("other/g")
	g.Labels = map[string]string{"tier": "gold"}
	h.assign(g, "198.51.100.0")
	p := svc("other/p")
	p.NamespaceLabels = map[string]string{"env": "prod"}
	h.assign(p, "203.0.113.0")
	h.refuse(svc("other/none"), ReasonNoPool)
	asked := svc("other/asked")
	asked.Pool = "team"
	h.refuse(asked, ReasonPoolNotAllowed)

	// The Service loses the label that let it use its pool: it keeps its
	// address, with a warning; a new Service like it gets none.
	g.Labels = nil
	res := h.assign(g, "198.51.100.0")
	if len(res.Warnings) != 1 || !strings.Contains(res.Warnings[0].Message, "no longer serve") {
		t.Errorf("warnings %v, want one saying pool gold no longer serves it", res.Warnings)
	}
	h.refuse(svc("other/g2"), ReasonNoPool)
	// Its asking for another pool is its own change: it moves.
	g.Pool = "prod"
	g.NamespaceLabels = map[string]string{"env": "prod"}
	h.assign(g, "203.0.113.1")
}

func TestSharing(t *testing.T) {
	h := newHarness(t, Config{Pools: []Pool{pool(t, "lan", "192.0.2.0/30")}})
	web := svc("a/web")
	web.SharingKey = "k"
	dns := svc("a/dns")
	dns.SharingKey = "k"
	dns.Ports = []Port{{"UDP", 53}}
	h.assign(web, "192.0.2.0")
	h.assign(dns, "192.0.2.0")
	// Same key, same port: a fresh address, not the shared one.
	web2 := svc("a/web2")
	web2.SharingKey = "k"
	h.assign(web2, "192.0.2.1")
	// Asking for the shared address with a colliding port is refused.
	web3 := svc("a/web3")
	web3.SharingKey = "k"
	web3.IPs = []netip.Addr{ip("192.0.2.0")}
	if e := h.refuse(web3, ReasonIPInUse); !strings.Contains(e.Message, "TCP port 80") {
		t.Errorf("refusal %q does not name the port", e.Message)
	}
	// No key: no sharing.
	plain := svc("a/plain")
	plain.Ports = []Port{{"TCP", 443}}
	plain.IPs = []netip.Addr{ip("192.0.2.0")}
	h.refuse(plain, ReasonIPInUse)
	// Local Services share only with Local Services of the same selector.
	l1 := svc("a/l1")
	l1.SharingKey, l1.Local, l1.Selector = "l", true, "app=x"
	l2 := l1
	l2.Key, l2.Ports = "a/l2", []Port{{"TCP", 81}}
	h.assign(l1, "192.0.2.2")
	h.assign(l2, "192.0.2.2")
	l3 := l2
	l3.Key, l3.Ports, l3.Selector = "a/l3", []Port{{"TCP", 82}}, "app=y"
	l3.IPs = []netip.Addr{ip("192.0.2.2")}
	if e := h.refuse(l3, ReasonIPInUse); !strings.Contains(e.Message, "same pod selector") {
		t.Errorf("refusal %q does not explain the selector rule", e.Message)
	}
	c := svc("a/cluster")
	c.SharingKey, c.Ports = "l", []Port{{"TCP", 83}}
	c.IPs = []netip.Addr{ip("192.0.2.2")}
	h.refuse(c, ReasonIPInUse)
	// The shared address stays held while any sharer does.
	h.a.Release(web.Key)
	h.check()
	if got := h.a.Holders(ip("192.0.2.0")); len(got) != 1 || got[0] != dns.Key {
		t.Fatalf("holders after release: %v", got)
	}
}

func TestDualStack(t *testing.T) {
	h := newHarness(t, Config{Pools: []Pool{pool(t, "v4", "192.0.2.0/30"), pool(t, "v6", "2001:db8::/126")}})
	req := svc("a/dual")
	req.Families, req.Policy = []Family{IPv6, IPv4}, RequireDualStack
	h.assign(req, "2001:db8::", "192.0.2.0")

	single := svc("a/single")
	single.Families, single.Policy = []Family{IPv6, IPv4}, SingleStack
	h.assign(single, "2001:db8::1")

	// Without IPv6 addresses left: Require gets nothing and says why,
	// Prefer takes IPv4 with a warning.
	h2 := newHarness(t, Config{Pools: []Pool{pool(t, "v4", "192.0.2.0/30")}})
	req2 := svc("a/req")
	req2.Families, req2.Policy = []Family{IPv4, IPv6}, RequireDualStack
	if e := h2.refuse(req2, ReasonDualStack); !strings.Contains(e.Message, "IPv6") {
		t.Errorf("message %q does not name the missing family", e.Message)
	}
	pref := svc("a/pref")
	pref.Families, pref.Policy = []Family{IPv4, IPv6}, PreferDualStack
	res := h2.assign(pref, "192.0.2.0")
	if len(res.Warnings) != 1 || res.Warnings[0].Reason != ReasonPartialDual {
		t.Errorf("warnings %v, want %s", res.Warnings, ReasonPartialDual)
	}
	// The address Require could have had is still free.
	h2.assign(svc("a/next"), "192.0.2.1")
}

func TestReservationsAndOverlaps(t *testing.T) {
	a := pool(t, "a", "10.96.0.0/30", "192.0.2.0/31")
	b := pool(t, "b", "192.0.2.1-192.0.2.2")
	b.Priority, b.HasPriority = 1, true
	cfg := Config{
		Pools:    []Pool{a, b},
		Reserved: []Reservation{{Range: mustRanges(t, "10.96.0.0/16")[0], Why: "service CIDR 10.96.0.0/16"}},
	}
	h := newHarness(t, cfg)
	reps := h.a.Reports()
	if got := strings.Join(reps[0].Conflicts, ";"); got != "pool b;service CIDR 10.96.0.0/16" {
		t.Errorf("pool a conflicts %q", got)
	}
	if got := reps[0].Usage[IPv4].Capacity.String(); got != "2" {
		t.Errorf("pool a capacity %s, want 2 (the service CIDR part taken out)", got)
	}
	// b first (priority), then a; the shared address .1 goes out once.
	h.assign(svc("x/1"), "192.0.2.1")
	h.assign(svc("x/2"), "192.0.2.2")
	h.assign(svc("x/3"), "192.0.2.0")
	h.refuse(svc("x/4"), ReasonPoolExhausted)
	reserved := svc("x/5")
	reserved.IPs = []netip.Addr{ip("10.96.0.1")}
	h.refuse(reserved, ReasonIPReserved)
}

func TestAvoidBuggyIPs(t *testing.T) {
	p := pool(t, "p", "192.0.2.255-192.0.3.1")
	p.AvoidBuggyIPs = true
	h := newHarness(t, Config{Pools: []Pool{p}})
	if got := h.a.Reports()[0].Usage[IPv4].Capacity.String(); got != "1" {
		t.Errorf("capacity %s, want 1", got)
	}
	h.assign(svc("a/1"), "192.0.3.1")
	h.refuse(svc("a/2"), ReasonPoolExhausted)
}

func TestRestoreRefusesDuplicates(t *testing.T) {
	h := newHarness(t, Config{Pools: []Pool{pool(t, "p", "192.0.2.0/30")}})
	if err := h.a.Restore(svc("a/first"), []netip.Addr{ip("192.0.2.1")}); err != nil {
		t.Fatal(err)
	}
	err := h.a.Restore(svc("a/second"), []netip.Addr{ip("192.0.2.1")})
	e, ok := err.(*Error)
	if !ok || e.Reason != ReasonDuplicate || !strings.Contains(e.Message, "a/first") {
		t.Fatalf("restore of a duplicate: %v", err)
	}
	h.check()
	if got := h.a.Assigned("a/second"); len(got) != 0 {
		t.Fatalf("duplicate recorded: %v", got)
	}
	// Sharers restore fine.
	s1, s2 := svc("b/s1"), svc("b/s2")
	s1.SharingKey, s2.SharingKey, s2.Ports = "k", "k", []Port{{"UDP", 53}}
	for _, s := range []Request{s1, s2} {
		if err := h.a.Restore(s, []netip.Addr{ip("192.0.2.2")}); err != nil {
			t.Fatal(err)
		}
	}
	h.check()
}

func TestParseRange(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.0/30":            "192.0.2.0-192.0.2.3",
		"192.0.2.7 - 192.0.2.9":   "192.0.2.7-192.0.2.9",
		"2001:db8::/127":          "2001:db8::-2001:db8::1",
		"192.0.2.5/32":            "192.0.2.5",
		"2001:db8::1-2001:db8::1": "2001:db8::1",
	} {
		r, err := ParseRange(in)
		if err != nil || r.String() != want {
			t.Errorf("ParseRange(%q) = %v, %v; want %s", in, r, err, want)
		}
	}
	for in, want := range map[string]string{
		"192.0.2.1/24":          "host bits",
		"192.0.2.9-192.0.2.1":   "after the last",
		"192.0.2.1-2001:db8::1": "mixes",
		"banana":                "neither",
		"192.0.2.1-":            "last address",
	} {
		if _, err := ParseRange(in); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseRange(%q) = %v, want an error with %q", in, err, want)
		}
	}
}
