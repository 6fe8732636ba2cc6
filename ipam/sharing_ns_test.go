package ipam

import (
	"net/netip"
	"strings"
	"testing"
)

// Sharing keys are per namespace: a tenant who guesses another namespace's
// key joins nothing, and learns nothing of its Services. Across
// namespaces, both sides must name each other (or "*").
func TestSharingKeysPerNamespace(t *testing.T) {
	h := newHarness(t, Config{Pools: []Pool{pool(t, "p", "192.0.2.0/29")}})
	shared := func(key string, port int32, with ...string) Request {
		r := svc(key)
		r.SharingKey, r.Ports, r.ShareWithNamespaces = "team", []Port{{"TCP", port}}, with
		return r
	}
	h.assign(shared("shop/web", 80), "192.0.2.0")
	h.assign(shared("shop/api", 81), "192.0.2.0")
	// Another namespace, same key, free port: a fresh address, not shop's.
	h.assign(shared("evil/grab", 82), "192.0.2.1")
	// Asking for shop's address outright is refused, without naming shop's Services.
	ask := shared("evil/ask", 83)
	ask.IPs = []netip.Addr{ip("192.0.2.0")}
	e := h.refuse(ask, ReasonIPInUse)
	if strings.Contains(e.Message, "shop/") || !strings.Contains(e.Message, "a Service in another namespace") || !strings.Contains(e.Message, "allow-shared-ip-namespaces") {
		t.Errorf("refusal %q: want it to hide shop's Services and say how to share across namespaces", e.Message)
	}
	// One side opting in is not enough.
	one := shared("ops/one", 84, "shop")
	one.IPs = []netip.Addr{ip("192.0.2.0")}
	h.refuse(one, ReasonIPInUse)
	// Both sides opting in: shared. shop's Services now name ops (one by
	// name, one by "*").
	h.assign(shared("shop/web", 80, "ops"), "192.0.2.0")
	h.assign(shared("shop/api", 81, "*"), "192.0.2.0")
	h.assign(one, "192.0.2.0")
	// A third namespace that shop's web does not list still cannot join.
	other := shared("dev/x", 85, "*")
	other.IPs = []netip.Addr{ip("192.0.2.0")}
	h.refuse(other, ReasonIPInUse)
	h.check()
	// After a restart the same holds: restoring evil on shop's address is refused.
	h2 := newHarness(t, Config{Pools: []Pool{pool(t, "p", "192.0.2.0/29")}})
	if err := h2.a.Restore(shared("shop/web", 80), []netip.Addr{ip("192.0.2.0")}); err != nil {
		t.Fatal(err)
	}
	err := h2.a.Restore(shared("evil/grab", 82), []netip.Addr{ip("192.0.2.0")})
	if e, ok := err.(*Error); !ok || e.Reason != ReasonDuplicate || strings.Contains(e.Message, "shop/") {
		t.Fatalf("restore across namespaces: %v", err)
	}
	h2.check()
}
