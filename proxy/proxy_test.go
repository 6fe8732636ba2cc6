package proxy

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"sigs.k8s.io/knftables"
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
	f := knftables.NewFake(knftables.InetFamily, Table)
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
	// Hairpin: an endpoint reaching itself through the Service is masqueraded.
	want(t, rs, packet{src: epB, dst: svc, proto: "udp", dport: 53, hook: "prerouting"},
		"dnat 10.244.1.7:5353 masq=true; dnat 10.244.2.9:5353 masq=false")
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
	f := knftables.NewFake(knftables.InetFamily, Table)
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
	f := knftables.NewFake(knftables.InetFamily, Table)
	web := ServicePort{Key: PortKey{"shop", "web", "http", "tcp"}, ClusterIPs: []netip.Addr{addr("10.96.5.5")}, Port: 80, NodePort: 30080}
	st := baseState(web)
	st.Endpoints[web.Key] = []Endpoint{ep(epB, 8080, false)}
	rs := applied(t, f, nil, st)
	other := addr("172.16.0.11")
	// Every local address by default, IPv6 too.
	for _, dst := range []netip.Addr{node1, other, addr("2001:db8::11")} {
		want(t, rs, packet{src: out, dst: dst, proto: "tcp", dport: 30080, hook: "prerouting", local: true}, "dnat 10.244.1.7:8080 masq=true")
	}
	st.NodePortCIDRs = []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}
	rs = applied(t, f, &rs, st)
	want(t, rs, packet{src: out, dst: node1, proto: "tcp", dport: 30080, hook: "prerouting", local: true}, "dnat 10.244.1.7:8080 masq=true")
	want(t, rs, packet{src: out, dst: other, proto: "tcp", dport: 30080, hook: "prerouting", local: true}, "accept")
	want(t, rs, packet{src: out, dst: addr("2001:db8::11"), proto: "tcp", dport: 30080, hook: "prerouting", local: true}, "accept")
	// The ClusterIP is not affected.
	want(t, rs, packet{src: podA, dst: addr("10.96.5.5"), proto: "tcp", dport: 80, hook: "prerouting"}, "dnat 10.244.1.7:8080 masq=false")
}

func TestDualStack(t *testing.T) {
	f := knftables.NewFake(knftables.InetFamily, Table)
	s := dns()
	s.ClusterIPs = append(s.ClusterIPs, addr("fd00:10:96::a"))
	st := baseState(s)
	st.Endpoints[s.Key] = []Endpoint{ep(epB, 53, false), ep(addr("fd00:10:244:1::7"), 53, false)}
	rs := applied(t, f, nil, st)
	want(t, rs, packet{src: addr("fd00:10:244::5"), dst: addr("fd00:10:96::a"), proto: "udp", dport: 53, hook: "prerouting"},
		"dnat 10.244.1.7:53 masq=false; dnat [fd00:10:244:1::7]:53 masq=false")
}

// With 1,000 Services present, changing one Service's endpoints touches only
// that Service's chains and map entries; removing it leaves nothing of it.
func TestIncrementalSync(t *testing.T) {
	f := knftables.NewFake(knftables.InetFamily, Table)
	st := baseState()
	for i := range 1000 {
		s := ServicePort{Key: PortKey{"ns", fmt.Sprintf("s%d", i), "p", "tcp"}, ClusterIPs: []netip.Addr{netip.AddrFrom4([4]byte{10, 96, byte(i / 250), byte(i % 250)})}, Port: 80}
		st.Services = append(st.Services, s)
		st.Endpoints[s.Key] = []Endpoint{ep(netip.AddrFrom4([4]byte{10, 244, byte(i / 250), byte(i % 250)}), 8080, false)}
	}
	rs := applied(t, f, nil, st)
	k := st.Services[500].Key
	st.Endpoints[k] = append(st.Endpoints[k], ep(epC, 8080, false))
	next := Build(st)
	tx := f.NewTransaction()
	Sync(tx, &rs.built, next)
	if n := tx.NumOperations(); n > 10 {
		t.Errorf("one endpoint added: %d operations, want a handful\n%s", n, tx)
	}
	rs = applied(t, f, &rs, st)
	want(t, rs, packet{src: podA, dst: addr("10.96.2.0"), proto: "tcp", dport: 80, hook: "prerouting"},
		"dnat 10.244.2.0:8080 masq=false; dnat 10.244.2.9:8080 masq=false")

	st.Services = append(st.Services[:500], st.Services[501:]...)
	delete(st.Endpoints, k)
	rs = applied(t, f, &rs, st)
	want(t, rs, packet{src: podA, dst: addr("10.96.2.0"), proto: "tcp", dport: 80, hook: "prerouting"}, "accept")
	// Nothing changes, nothing is sent.
	tx = f.NewTransaction()
	Sync(tx, &rs.built, Build(st))
	if n := tx.NumOperations(); n != 0 {
		t.Errorf("no change: %d operations\n%s", n, tx)
	}
}

// With ClientIP affinity, a client the kernel has seen goes back to the same
// endpoint; a new client is balanced.
func TestAffinity(t *testing.T) {
	f := knftables.NewFake(knftables.InetFamily, Table)
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
	live := rs.live
	live.Sets[set] = Set{Type: "ipv4_addr", Elements: []string{podA.String() + "/32"}}
	if got := outcomes(trace(t, live, packet{src: podA, dst: svc, proto: "udp", dport: 53, hook: "prerouting"})); got != "dnat 10.244.2.9:53 masq=false" {
		t.Errorf("returning client: %s, want its endpoint 10.244.2.9 only", got)
	}
	if rs.live.Sets[set].TimeoutSeconds != 0 && f.Table.Sets[set] == nil {
		t.Errorf("affinity set %s not in the table", set)
	}
}

// After a failed apply the syncer forgets what it applied and rebuilds: the
// table then holds exactly the new ruleset, nothing stale.
func TestFullRebuildLeavesNothingStale(t *testing.T) {
	f := knftables.NewFake(knftables.InetFamily, Table)
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
