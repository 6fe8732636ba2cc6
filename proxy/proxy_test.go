package proxy

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/berthnet/berth/internal/nftrules"
)

var (
	podA  = netip.MustParseAddr("10.244.0.5")
	epB   = netip.MustParseAddr("10.244.1.7")
	epC   = netip.MustParseAddr("10.244.2.9")
	node1 = netip.MustParseAddr("192.0.2.11")
	out   = netip.MustParseAddr("203.0.113.2")
)

func addr(s string) netip.Addr { return netip.MustParseAddr(s) }

func dns() ServicePort {
	return ServicePort{Key: PortKey{"kube-system", "dns", "dns", "udp"}, ClusterIPs: []netip.Addr{addr("10.96.0.10")}, Port: 53}
}

func ep(a netip.Addr, port uint16, local bool) Endpoint {
	return Endpoint{Addr: a, Port: port, Ready: true, Serving: true, Local: local}
}

func baseState(svcs ...ServicePort) State {
	return State{
		Services:     svcs,
		Endpoints:    map[PortKey][]Endpoint{},
		ClusterCIDRs: []netip.Prefix{netip.MustParsePrefix("10.244.0.0/16"), netip.MustParsePrefix("fd00:10:244::/48")},
	}
}

func outcomes(os []outcome) string {
	s := make([]string, len(os))
	for i, o := range os {
		s[i] = o.String()
	}
	return strings.Join(s, "; ")
}

func want(t *testing.T, rs appliedRS, p packet, expect string) {
	t.Helper()
	if got := outcomes(trace(t, rs.live, p)); got != expect {
		t.Errorf("%s:%d/%s from %s (%s): got %q, want %q", p.dst, p.dport, p.proto, p.src, p.hook, got, expect)
	}
}

func TestClusterIP(t *testing.T) {
	f := nftrules.NewFake(Table)
	st := baseState(dns())
	st.Endpoints[dns().Key] = []Endpoint{ep(epB, 5353, false), ep(epC, 5353, true)}
	rs := applied(t, f, nil, st)
	svc := addr("10.96.0.10")

	// From a pod: to one of the endpoints, source kept.
	want(t, rs, packet{src: podA, dst: svc, proto: "udp", dport: 53, hook: "prerouting"},
		"dnat 10.244.1.7:5353 masq=false; dnat 10.244.2.9:5353 masq=false")
	// From the node itself: masqueraded, so replies come back through it.
	want(t, rs, packet{src: node1, dst: svc, proto: "udp", dport: 53, hook: "output"},
		"dnat 10.244.1.7:5353 masq=true; dnat 10.244.2.9:5353 masq=true")
	// Hairpin: an endpoint on this node reaching itself through the
	// Service is masqueraded. (One on another node meets its own node's
	// rules, not these.)
	want(t, rs, packet{src: epC, dst: svc, proto: "udp", dport: 53, hook: "prerouting"},
		"dnat 10.244.1.7:5353 masq=false; dnat 10.244.2.9:5353 masq=true")
	// Another port or protocol is not the Service's.
	want(t, rs, packet{src: podA, dst: svc, proto: "tcp", dport: 53, hook: "prerouting"}, "accept")

	// No endpoints: rejected at once, in the filter hook.
	st.Endpoints[dns().Key] = nil
	rs = applied(t, f, &rs, st)
	want(t, rs, packet{src: podA, dst: svc, proto: "udp", dport: 53, hook: "prerouting"}, "reject")

	// Only terminating endpoints that still serve: they are used.
	st.Endpoints[dns().Key] = []Endpoint{{Addr: epB, Port: 5353, Serving: true, Terminating: true}, {Addr: epC, Port: 5353, Terminating: true}}
	rs = applied(t, f, &rs, st)
	want(t, rs, packet{src: podA, dst: svc, proto: "udp", dport: 53, hook: "prerouting"}, "dnat 10.244.1.7:5353 masq=false")
	// A ready endpoint wins over the terminating ones.
	st.Endpoints[dns().Key] = append(st.Endpoints[dns().Key], ep(addr("10.244.3.3"), 5353, false))
	rs = applied(t, f, &rs, st)
	want(t, rs, packet{src: podA, dst: svc, proto: "udp", dport: 53, hook: "prerouting"}, "dnat 10.244.3.3:5353 masq=false")
}

func TestExternalTraffic(t *testing.T) {
	f := nftrules.NewFake(Table)
	web := ServicePort{Key: PortKey{"shop", "web", "http", "tcp"}, ClusterIPs: []netip.Addr{addr("10.96.5.5")}, Port: 80,
		NodePort: 30080, LoadBalancerIPs: []netip.Addr{addr("198.51.100.10")}}
	local := web
	local.Key = PortKey{"shop", "local", "http", "tcp"}
	local.ClusterIPs, local.NodePort, local.LoadBalancerIPs = []netip.Addr{addr("10.96.5.6")}, 30081, []netip.Addr{addr("198.51.100.11")}
	local.ExternalLocal = true
	st := baseState(web, local)
	st.Endpoints[web.Key] = []Endpoint{ep(epB, 8080, false), ep(epC, 8080, true)}
	st.Endpoints[local.Key] = []Endpoint{ep(epB, 8080, false), ep(epC, 8080, true)}
	rs := applied(t, f, nil, st)

	// Cluster policy: from outside, to any endpoint, masqueraded.
	want(t, rs, packet{src: out, dst: addr("198.51.100.10"), proto: "tcp", dport: 80, hook: "prerouting"},
		"dnat 10.244.1.7:8080 masq=true; dnat 10.244.2.9:8080 masq=true")
	want(t, rs, packet{src: out, dst: node1, proto: "tcp", dport: 30080, hook: "prerouting", local: true},
		"dnat 10.244.1.7:8080 masq=true; dnat 10.244.2.9:8080 masq=true")
	// A node port on an address that is not the node's is not a node port.
	want(t, rs, packet{src: out, dst: addr("192.0.2.99"), proto: "tcp", dport: 30080, hook: "prerouting"}, "accept")
	// Local policy: only this node's endpoint, client address kept.
	want(t, rs, packet{src: out, dst: addr("198.51.100.11"), proto: "tcp", dport: 80, hook: "prerouting"},
		"dnat 10.244.2.9:8080 masq=false")
	want(t, rs, packet{src: out, dst: node1, proto: "tcp", dport: 30081, hook: "prerouting", local: true},
		"dnat 10.244.2.9:8080 masq=false")
	// Inside the cluster the Local Service still reaches every endpoint.
	want(t, rs, packet{src: podA, dst: addr("10.96.5.6"), proto: "tcp", dport: 80, hook: "prerouting"},
		"dnat 10.244.1.7:8080 masq=false; dnat 10.244.2.9:8080 masq=false")
	// Local policy with no local endpoint: external traffic is refused
	// rather than sent off the node.
	st.Endpoints[local.Key] = []Endpoint{ep(epB, 8080, false)}
	rs = applied(t, f, &rs, st)
	want(t, rs, packet{src: out, dst: addr("198.51.100.11"), proto: "tcp", dport: 80, hook: "prerouting"}, "reject")
	want(t, rs, packet{src: podA, dst: addr("10.96.5.6"), proto: "tcp", dport: 80, hook: "prerouting"}, "dnat 10.244.1.7:8080 masq=false")
}

// Node-port ranges narrow the node's addresses that answer node ports.
func TestNodePortAddresses(t *testing.T) {
	f := nftrules.NewFake(Table)
	web := ServicePort{Key: PortKey{"shop", "web", "http", "tcp"}, ClusterIPs: []netip.Addr{addr("10.96.5.5")}, Port: 80, NodePort: 30080}
	st := baseState(web)
	st.Endpoints[web.Key] = []Endpoint{ep(epB, 8080, false), ep(addr("fd00:10:244:1::7"), 8080, false)}
	rs := applied(t, f, nil, st)
	other := addr("172.16.0.11")
	// Every local address by default, IPv6 too.
	for _, dst := range []netip.Addr{node1, other} {
		want(t, rs, packet{src: out, dst: dst, proto: "tcp", dport: 30080, hook: "prerouting", local: true}, "dnat 10.244.1.7:8080 masq=true")
	}
	want(t, rs, packet{src: addr("2001:db8::99"), dst: addr("2001:db8::11"), proto: "tcp", dport: 30080, hook: "prerouting", local: true}, "dnat [fd00:10:244:1::7]:8080 masq=true")
	st.NodePortCIDRs = []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}
	rs = applied(t, f, &rs, st)
	want(t, rs, packet{src: out, dst: node1, proto: "tcp", dport: 30080, hook: "prerouting", local: true}, "dnat 10.244.1.7:8080 masq=true")
	want(t, rs, packet{src: out, dst: other, proto: "tcp", dport: 30080, hook: "prerouting", local: true}, "accept")
	want(t, rs, packet{src: addr("2001:db8::99"), dst: addr("2001:db8::11"), proto: "tcp", dport: 30080, hook: "prerouting", local: true}, "accept")
	// The ClusterIP is not affected.
	want(t, rs, packet{src: podA, dst: addr("10.96.5.5"), proto: "tcp", dport: 80, hook: "prerouting"}, "dnat 10.244.1.7:8080 masq=false")
}

func TestDualStack(t *testing.T) {
	f := nftrules.NewFake(Table)
	s := dns()
	s.ClusterIPs = append(s.ClusterIPs, addr("fd00:10:96::a"))
	st := baseState(s)
	st.Endpoints[s.Key] = []Endpoint{ep(epB, 53, false), ep(addr("fd00:10:244:1::7"), 53, false)}
	rs := applied(t, f, nil, st)
	// Each family goes to the endpoints of its own family.
	want(t, rs, packet{src: addr("fd00:10:244::5"), dst: addr("fd00:10:96::a"), proto: "udp", dport: 53, hook: "prerouting"},
		"dnat [fd00:10:244:1::7]:53 masq=false")
	want(t, rs, packet{src: podA, dst: addr("10.96.0.10"), proto: "udp", dport: 53, hook: "prerouting"},
		"dnat 10.244.1.7:53 masq=false")
}

// With 1,000 Services present, the syncer sends only what one change
// touches, the table always ends as a full build would make it, and an
// unchanged state sends nothing.
func TestIncrementalSync(t *testing.T) {
	f := nftrules.NewFake(Table)
	st := baseState()
	for i := range 1000 {
		s := ServicePort{Key: PortKey{"ns", fmt.Sprintf("s%d", i), "p", "tcp"}, ClusterIPs: []netip.Addr{netip.AddrFrom4([4]byte{10, 96, byte(i / 250), byte(i % 250)})}, Port: 80}
		st.Services = append(st.Services, s)
		st.Endpoints[s.Key] = []Endpoint{ep(netip.AddrFrom4([4]byte{10, 244, byte(i / 250), byte(i % 250)}), 8080, false)}
	}
	s := NewSyncer(f, nil)
	sync := func(maxOps int, what string) appliedRS {
		t.Helper()
		runs := f.Runs()
		if err := s.Sync(context.Background(), st); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if _, ops := f.LastTx(); maxOps >= 0 && f.Runs() > runs && ops > maxOps {
			t.Errorf("%s: %d operations, want at most %d", what, ops, maxOps)
		}
		return matchesBuild(t, f, st)
	}
	sync(-1, "first sync")
	k := st.Services[500].Key
	st.Endpoints[k] = append(st.Endpoints[k], ep(epC, 8080, false))
	rs := sync(8, "one endpoint added")
	want(t, rs, packet{src: podA, dst: addr("10.96.2.0"), proto: "tcp", dport: 80, hook: "prerouting"},
		"dnat 10.244.2.0:8080 masq=false; dnat 10.244.2.9:8080 masq=false")
	// An endpoint replaced by another changes data only: no rule, so the
	// kernel has no loops to look for.
	st.Endpoints[k] = []Endpoint{st.Endpoints[k][0], ep(addr("10.244.3.3"), 8080, false)}
	rs = sync(4, "one endpoint replaced")
	if tx, _ := f.LastTx(); strings.Contains(tx, " rule ") || strings.Contains(tx, " chain ") {
		t.Errorf("one endpoint replaced: the transaction touches rules:\n%s", tx)
	}
	want(t, rs, packet{src: podA, dst: addr("10.96.2.0"), proto: "tcp", dport: 80, hook: "prerouting"},
		"dnat 10.244.2.0:8080 masq=false; dnat 10.244.3.3:8080 masq=false")

	st.Services = append(st.Services[:500], st.Services[501:]...)
	delete(st.Endpoints, k)
	rs = sync(8, "one Service removed")
	want(t, rs, packet{src: podA, dst: addr("10.96.2.0"), proto: "tcp", dport: 80, hook: "prerouting"}, "accept")
	runs := f.Runs()
	sync(0, "no change")
	if f.Runs() != runs {
		t.Errorf("no change: a transaction was sent")
	}
}

// Two Services that claim the same external address and port: the first
// keeps it, the second gets it when the first lets go, and a hairpin pair
// shared by two Services stays until neither has the endpoint.
func TestSharedElements(t *testing.T) {
	f := nftrules.NewFake(Table)
	a := ServicePort{Key: PortKey{"ns", "a", "p", "tcp"}, ClusterIPs: []netip.Addr{addr("10.96.0.1")}, Port: 80, ExternalIPs: []netip.Addr{addr("192.0.2.50")}}
	b := a
	b.Key.Name, b.ClusterIPs = "b", []netip.Addr{addr("10.96.0.2")}
	st := baseState(a, b)
	st.Endpoints[a.Key] = []Endpoint{ep(epB, 8080, true)}
	st.Endpoints[b.Key] = []Endpoint{ep(epB, 8080, true), ep(epC, 8080, false)}
	s := NewSyncer(f, nil)
	step := func(what string) appliedRS {
		t.Helper()
		if err := s.Sync(context.Background(), st); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		return matchesBuild(t, f, st)
	}
	rs := step("both")
	want(t, rs, packet{src: out, dst: addr("192.0.2.50"), proto: "tcp", dport: 80, hook: "prerouting"}, "dnat 10.244.1.7:8080 masq=true")
	// a loses its endpoint: b's claim takes over; the hairpin pair of epB
	// stays for b.
	st.Endpoints[a.Key] = nil
	st.Services = []ServicePort{b}
	rs = step("a gone")
	want(t, rs, packet{src: out, dst: addr("192.0.2.50"), proto: "tcp", dport: 80, hook: "prerouting"},
		"dnat 10.244.1.7:8080 masq=true; dnat 10.244.2.9:8080 masq=true")
	want(t, rs, packet{src: epB, dst: addr("10.96.0.2"), proto: "tcp", dport: 80, hook: "prerouting"},
		"dnat 10.244.1.7:8080 masq=true; dnat 10.244.2.9:8080 masq=false")
	st.Endpoints[b.Key] = []Endpoint{ep(epC, 8080, false)}
	step("epB gone")
	if slices.Contains(live(t, f).Sets[setHairpin].Elements, epB.String()+" . "+epB.String()) {
		t.Errorf("hairpin pair of a gone endpoint stayed")
	}
}

// matchesBuild checks that the fake holds what a full build of st gives,
// and returns it for tracing. Where a Service port's endpoints sit in the
// endpoint maps depends on the syncer's history, so both sides are
// compared with each dnat rule showing its endpoints instead.
func matchesBuild(t *testing.T, f *nftrules.Fake, st State) appliedRS {
	t.Helper()
	want, got := canonical(Build(st)), canonical(live(t, f))
	for _, b := range baseChains() {
		want.Chains[b.Name] = b.Rules
	}
	if fmt.Sprint(want.Chains) != fmt.Sprint(got.Chains) {
		t.Fatalf("chains differ from a full build:\n%v\nwant\n%v", got.Chains, want.Chains)
	}
	for name, m := range want.Maps {
		if fmt.Sprint(got.Maps[name].Elements) != fmt.Sprint(m.Elements) {
			t.Fatalf("map %s: %v, want %v", name, got.Maps[name].Elements, m.Elements)
		}
	}
	for name, set := range want.Sets {
		if fmt.Sprint(got.Sets[name].Elements) != fmt.Sprint(set.Elements) || got.Sets[name].TimeoutSeconds != set.TimeoutSeconds {
			t.Fatalf("set %s: %+v, want %+v", name, got.Sets[name], set)
		}
	}
	if len(got.Sets) != len(want.Sets) || len(got.Maps) != len(want.Maps) {
		t.Fatalf("sets/maps: %d/%d, want %d/%d", len(got.Sets), len(got.Maps), len(want.Sets), len(want.Maps))
	}
	rs := live(t, f)
	return appliedRS{built: rs, live: rs}
}

// canonical rewrites each "dnat ... to numgen random mod N offset O map @M"
// rule as "dnat ... to {endpoints}" and empties the endpoint maps, so that
// rulesets that put the same endpoints at other keys compare equal. Each
// key must be used once.
func canonical(rs nftrules.Ruleset) nftrules.Ruleset {
	out := nftrules.Ruleset{Chains: map[string][]string{}, Maps: map[string]nftrules.Map{}, Sets: rs.Sets}
	used := map[string]bool{}
	for name, rules := range rs.Chains {
		var rr []string
		for _, r := range rules {
			f := strings.Fields(r)
			if i := slices.Index(f, "numgen"); i > 0 && f[i-1] == "to" {
				n, _ := strconv.Atoi(f[i+3])
				off, _ := strconv.Atoi(f[i+5])
				m := f[i+7][1:]
				var eps []string
				for k := off; k < off+n; k++ {
					key := m + " " + strconv.Itoa(k)
					if used[key] {
						eps = append(eps, "REUSED")
					}
					used[key] = true
					eps = append(eps, rs.Maps[m].Elements[strconv.Itoa(k)])
				}
				sort.Strings(eps)
				r = strings.Join(f[:i], " ") + " {" + strings.Join(eps, ", ") + "}"
			}
			rr = append(rr, r)
		}
		out.Chains[name] = rr
	}
	for name, m := range rs.Maps {
		if strings.HasPrefix(name, "endpoints") {
			n := 0
			for k := range m.Elements {
				if !used[name+" "+k] {
					n++
				}
			}
			out.Maps[name] = nftrules.Map{Type: m.Type, Elements: map[string]string{"unused keys": strconv.Itoa(n)}}
			continue
		}
		out.Maps[name] = m
	}
	return out
}

// With ClientIP affinity, a client the kernel has seen goes back to the same
// endpoint; a new client is balanced.
func TestAffinity(t *testing.T) {
	f := nftrules.NewFake(Table)
	s := dns()
	s.AffinitySeconds = 10800
	st := baseState(s)
	st.Endpoints[s.Key] = []Endpoint{ep(epB, 53, false), ep(epC, 53, false)}
	rs := applied(t, f, nil, st)
	svc := addr("10.96.0.10")
	want(t, rs, packet{src: podA, dst: svc, proto: "udp", dport: 53, hook: "prerouting"},
		"dnat 10.244.1.7:53 masq=false; dnat 10.244.2.9:53 masq=false")
	// Pretend the kernel recorded podA on epC's set.
	set := affinitySet(s.Key, ep(epC, 53, false))
	seen := rs.live
	seen.Sets[set] = nftrules.Set{Type: "ipv4_addr", TimeoutSeconds: s.AffinitySeconds, Elements: []string{podA.String()}}
	if got := outcomes(trace(t, seen, packet{src: podA, dst: svc, proto: "udp", dport: 53, hook: "prerouting"})); got != "dnat 10.244.2.9:53 masq=false" {
		t.Errorf("returning client: %s, want its endpoint 10.244.2.9 only", got)
	}
	if _, ok := live(t, f).Sets[set]; !ok {
		t.Errorf("affinity set %s not in the table", set)
	}
}

// After a failed apply the syncer forgets what it applied and rebuilds: the
// table then holds exactly the new ruleset, nothing stale.
func TestFullRebuildLeavesNothingStale(t *testing.T) {
	f := nftrules.NewFake(Table)
	a, b := dns(), dns()
	b.Key.Name, b.ClusterIPs = "other", []netip.Addr{addr("10.96.0.11")}
	st := baseState(a, b)
	st.Endpoints[a.Key] = []Endpoint{ep(epB, 53, false)}
	st.Endpoints[b.Key] = []Endpoint{ep(epC, 53, false)}
	applied(t, f, nil, st)
	st = baseState(a)
	st.Endpoints[a.Key] = []Endpoint{ep(epC, 53, false)}
	rs := applied(t, f, nil, st)
	want(t, rs, packet{src: podA, dst: addr("10.96.0.11"), proto: "udp", dport: 53, hook: "prerouting"}, "accept")
	want(t, rs, packet{src: podA, dst: addr("10.96.0.10"), proto: "udp", dport: 53, hook: "prerouting"}, "dnat 10.244.2.9:53 masq=false")
}
