package proxy

import (
	"fmt"
	"net/netip"
	"sort"

	"github.com/berthnet/berth/internal/nftrules"
)

// The fixed chains and maps.
const (
	chainServices   = "services"
	chainMasqMark   = "mark-for-masquerade"
	chainReject     = "reject-service"
	mapServiceIPs   = "service-ips"
	mapServiceIPs6  = "service-ips6"
	mapNodePorts    = "service-nodeports"
	mapNoEndpoints  = "no-endpoint-services"
	mapNoEndpoints6 = "no-endpoint-services6"
	mapNoEPNodePort = "no-endpoint-nodeports"
	setCluster      = "cluster-cidrs"
	setCluster6     = "cluster-cidrs6"
	setNodePort     = "nodeport-cidrs"
	setNodePort6    = "nodeport-cidrs6"
	mapEndpoints    = "endpoints4-"
	mapEndpoints6   = "endpoints6-"
	// endpointShards spreads the endpoint maps: the kernel walks a map's
	// elements each time a rule that looks it up is added, and the rules
	// bound to it each time an element is added. 64 measured best at
	// 10,000 Services (16: 3.0 s full sync in the kernel, 64: 1.8 s, 256:
	// 1.8 s with four times the maps).
	endpointShards = 64
	setHairpin     = "hairpin"
	setHairpin6    = "hairpin6"
	masqMark       = "0x00004000"
)

// baseChains are the hooks: service lookup at dstnat for traffic arriving
// and leaving the node, masquerade at srcnat for marked packets and for
// hairpin traffic (a pod that reached itself through a Service: after DNAT
// its source and destination are the same endpoint), and the reject of
// Services without endpoints in the filter hooks.
func baseChains() []nftrules.BaseChain {
	lookup := "jump " + chainServices
	noEP := append([]string{
		"ip daddr . meta l4proto . th dport vmap @" + mapNoEndpoints,
		"ip6 daddr . meta l4proto . th dport vmap @" + mapNoEndpoints6,
	}, nodePortLookups(mapNoEPNodePort)...)
	return []nftrules.BaseChain{
		{Name: "nat-prerouting", Type: "nat", Hook: "prerouting", Priority: "dstnat", Rules: []string{lookup}},
		{Name: "nat-output", Type: "nat", Hook: "output", Priority: "dstnat", Rules: []string{lookup}},
		{Name: "nat-postrouting", Type: "nat", Hook: "postrouting", Priority: "srcnat", Rules: []string{
			"ip saddr . ip daddr @" + setHairpin + " jump " + chainMasqMark,
			"ip6 saddr . ip6 daddr @" + setHairpin6 + " jump " + chainMasqMark,
			"meta mark & " + masqMark + " == 0x00000000 return",
			"meta mark set meta mark ^ " + masqMark,
			"masquerade fully-random",
		}},
		// -110 runs before dstnat (-100): a Service without endpoints is
		// refused before anything rewrites the packet.
		{Name: "filter-prerouting", Type: "filter", Hook: "prerouting", Priority: "-110", Rules: noEP},
		{Name: "filter-output", Type: "filter", Hook: "output", Priority: "-110", Rules: noEP},
	}
}

// nodePortLookups look a packet to one of the node's own addresses up in a
// node-port map, when the address is in the node-port ranges (every
// address unless State.NodePortCIDRs narrows them).
func nodePortLookups(m string) []string {
	return []string{
		"fib daddr type local ip daddr @" + setNodePort + " meta l4proto . th dport vmap @" + m,
		"fib daddr type local ip6 daddr @" + setNodePort6 + " meta l4proto . th dport vmap @" + m,
	}
}

// Build computes the ruleset for a state. It is deterministic: the same
// state gives the same ruleset, so a diff against the last one is empty.
func Build(st State) nftrules.Ruleset { return build(st, newBlocks()) }

// build computes the ruleset with the endpoint-map ranges of b.
func build(st State, b *blocks) nftrules.Ruleset {
	rs := nftrules.Ruleset{
		Base: baseChains(),
		Chains: map[string][]string{
			chainServices: append([]string{
				"ip daddr . meta l4proto . th dport vmap @" + mapServiceIPs,
				"ip6 daddr . meta l4proto . th dport vmap @" + mapServiceIPs6,
			}, nodePortLookups(mapNodePorts)...),
			chainMasqMark: {"meta mark set meta mark | " + masqMark},
			chainReject:   {"reject"},
		},
		Maps: map[string]nftrules.Map{
			mapServiceIPs:   {Type: "ipv4_addr . inet_proto . inet_service : verdict", Elements: map[string]string{}},
			mapServiceIPs6:  {Type: "ipv6_addr . inet_proto . inet_service : verdict", Elements: map[string]string{}},
			mapNodePorts:    {Type: "inet_proto . inet_service : verdict", Elements: map[string]string{}},
			mapNoEndpoints:  {Type: "ipv4_addr . inet_proto . inet_service : verdict", Elements: map[string]string{}},
			mapNoEndpoints6: {Type: "ipv6_addr . inet_proto . inet_service : verdict", Elements: map[string]string{}},
			mapNoEPNodePort: {Type: "inet_proto . inet_service : verdict", Elements: map[string]string{}},
		},
		Sets: map[string]nftrules.Set{
			setCluster:   {Type: "ipv4_addr", Interval: true},
			setCluster6:  {Type: "ipv6_addr", Interval: true},
			setNodePort:  {Type: "ipv4_addr", Interval: true},
			setNodePort6: {Type: "ipv6_addr", Interval: true},
			setHairpin:   {Type: "ipv4_addr . ipv4_addr"},
			setHairpin6:  {Type: "ipv6_addr . ipv6_addr"},
		},
	}
	for i := range endpointShards {
		rs.Maps[fmt.Sprintf("%s%02d", mapEndpoints, i)] = nftrules.Map{Type: "integer : ipv4_addr . inet_service", Elements: map[string]string{}}
		rs.Maps[fmt.Sprintf("%s%02d", mapEndpoints6, i)] = nftrules.Map{Type: "integer : ipv6_addr . inet_service", Elements: map[string]string{}}
	}
	nodePorts := st.NodePortCIDRs
	if len(nodePorts) == 0 {
		nodePorts = []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")}
	}
	addCIDRs(&rs, setNodePort, setNodePort6, nodePorts)
	addCIDRs(&rs, setCluster, setCluster6, st.ClusterCIDRs)
	for _, sp := range st.Services {
		merge(&rs, buildFragment(sp, st.Endpoints[sp.Key], b))
	}
	for name, set := range rs.Sets {
		if set.TimeoutSeconds == 0 {
			set.Elements = sortedUnique(set.Elements)
			rs.Sets[name] = set
		}
	}
	return rs
}

// addCIDRs adds each CIDR to the interval set of its family.
func addCIDRs(rs *nftrules.Ruleset, set4, set6 string, cidrs []netip.Prefix) {
	for _, c := range cidrs {
		name := set4
		if c.Addr().Is6() {
			name = set6
		}
		s := rs.Sets[name]
		s.Elements = append(s.Elements, c.Masked().String())
		rs.Sets[name] = s
	}
}

// merge adds a Service port's part. Where two Services claim one map key
// (the same external IP and port, say), the first keeps it.
func merge(rs *nftrules.Ruleset, f fragment) {
	for name, rules := range f.chains {
		rs.Chains[name] = rules
	}
	for _, e := range f.elems {
		if _, taken := rs.Maps[e.set].Elements[e.key]; !taken {
			rs.Maps[e.set].Elements[e.key] = e.value
		}
	}
	for _, e := range f.own {
		rs.Maps[e.set].Elements[e.key] = e.value
	}
	for _, a := range f.members {
		e := hairpinMember(a)
		set := rs.Sets[e.set]
		set.Elements = append(set.Elements, e.key)
		rs.Sets[e.set] = set
	}
	for name, set := range f.sets {
		rs.Sets[name] = set
	}
}

func sortedUnique(ss []string) []string {
	sort.Strings(ss)
	out := ss[:0]
	for i, s := range ss {
		if i == 0 || s != ss[i-1] {
			out = append(out, s)
		}
	}
	return out
}
