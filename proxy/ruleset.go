package proxy

import (
	"crypto/sha256"
	"encoding/base32"
	"fmt"
	"net/netip"
	"sort"
	"strings"
)

// Ruleset is the table's content as data: regular chains with their rules,
// verdict maps and sets. The base chains (hooks) are fixed; see baseChains.
type Ruleset struct {
	Chains map[string][]string
	Maps   map[string]Map
	Sets   map[string]Set
}

// Map is a verdict map: key -> verdict.
type Map struct {
	Type     string
	Elements map[string]string
}

// Set is a set of addresses: an interval set with fixed elements, or (with
// TimeoutSeconds) a dynamic set the kernel fills, for session affinity.
type Set struct {
	Type           string
	Elements       []string
	TimeoutSeconds int
}

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
	masqMark        = "0x4000"
)

// baseChain is a chain attached to a hook.
type baseChain struct {
	Name, Type, Hook, Priority string
	Rules                      []string
}

// baseChains are the hooks: service lookup at dstnat for traffic arriving
// and leaving the node, masquerade at srcnat for marked packets, and the
// reject of Services without endpoints in the filter hooks.
func baseChains() []baseChain {
	lookup := "jump " + chainServices
	noEP := append([]string{
		"ip daddr . meta l4proto . th dport vmap @" + mapNoEndpoints,
		"ip6 daddr . meta l4proto . th dport vmap @" + mapNoEndpoints6,
	}, nodePortLookups(mapNoEPNodePort)...)
	return []baseChain{
		{Name: "nat-prerouting", Type: "nat", Hook: "prerouting", Priority: "dstnat", Rules: []string{lookup}},
		{Name: "nat-output", Type: "nat", Hook: "output", Priority: "dstnat", Rules: []string{lookup}},
		{Name: "nat-postrouting", Type: "nat", Hook: "postrouting", Priority: "srcnat", Rules: []string{
			"meta mark & " + masqMark + " == 0 return",
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
func Build(st State) Ruleset {
	rs := Ruleset{
		Chains: map[string][]string{
			chainServices: append([]string{
				"ip daddr . meta l4proto . th dport vmap @" + mapServiceIPs,
				"ip6 daddr . meta l4proto . th dport vmap @" + mapServiceIPs6,
			}, nodePortLookups(mapNodePorts)...),
			chainMasqMark: {"meta mark set meta mark | " + masqMark},
			chainReject:   {"reject"},
		},
		Maps: map[string]Map{
			mapServiceIPs:   {Type: "ipv4_addr . inet_proto . inet_service : verdict", Elements: map[string]string{}},
			mapServiceIPs6:  {Type: "ipv6_addr . inet_proto . inet_service : verdict", Elements: map[string]string{}},
			mapNodePorts:    {Type: "inet_proto . inet_service : verdict", Elements: map[string]string{}},
			mapNoEndpoints:  {Type: "ipv4_addr . inet_proto . inet_service : verdict", Elements: map[string]string{}},
			mapNoEndpoints6: {Type: "ipv6_addr . inet_proto . inet_service : verdict", Elements: map[string]string{}},
			mapNoEPNodePort: {Type: "inet_proto . inet_service : verdict", Elements: map[string]string{}},
		},
		Sets: map[string]Set{
			setCluster:   {Type: "ipv4_addr"},
			setCluster6:  {Type: "ipv6_addr"},
			setNodePort:  {Type: "ipv4_addr"},
			setNodePort6: {Type: "ipv6_addr"},
		},
	}
	nodePorts := st.NodePortCIDRs
	if len(nodePorts) == 0 {
		nodePorts = []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")}
	}
	for _, c := range nodePorts {
		name := setNodePort
		if c.Addr().Is6() {
			name = setNodePort6
		}
		s := rs.Sets[name]
		s.Elements = append(s.Elements, c.Masked().String())
		rs.Sets[name] = s
	}
	for _, c := range st.ClusterCIDRs {
		name := setCluster
		if c.Addr().Is6() {
			name = setCluster6
		}
		s := rs.Sets[name]
		s.Elements = append(s.Elements, c.Masked().String())
		rs.Sets[name] = s
	}
	for _, sp := range st.Services {
		addService(&rs, sp, st.Endpoints[sp.Key])
	}
	return rs
}

func addService(rs *Ruleset, sp ServicePort, eps []Endpoint) {
	proto := sp.Key.Protocol
	internal := usable(eps, sp.InternalLocal)
	external := usable(eps, sp.ExternalLocal)
	svcChain := chainName("svc", sp.Key, "")
	extChain := chainName("ext", sp.Key, "")

	put := func(m string, addr netip.Addr, port uint16, verdict string) {
		name := m
		if addr.Is6() {
			name = map[string]string{mapServiceIPs: mapServiceIPs6, mapNoEndpoints: mapNoEndpoints6}[m]
		}
		rs.Maps[name].Elements[fmt.Sprintf("%s . %s . %d", addr, proto, port)] = verdict
	}

	// Traffic to the ClusterIPs, from pods and from the node itself.
	for _, ip := range sp.ClusterIPs {
		if len(internal) == 0 {
			put(mapNoEndpoints, ip, sp.Port, "goto "+chainReject)
			continue
		}
		put(mapServiceIPs, ip, sp.Port, "goto "+svcChain)
	}
	if len(internal) > 0 {
		var rules []string
		// Only traffic from outside the pod ranges (the node, hostNetwork
		// pods) is masqueraded: pod-to-pod keeps its source.
		for _, fam := range []struct{ match, set string }{{"ip", setCluster}, {"ip6", setCluster6}} {
			rules = append(rules, fmt.Sprintf("%s saddr != @%s jump %s", fam.match, fam.set, chainMasqMark))
		}
		rules = append(rules, affinity(rs, sp, internal)...)
		rules = append(rules, balance(sp.Key, internal)...)
		rs.Chains[svcChain] = rules
	}

	// Traffic from outside: external IPs, load-balancer IPs, node ports.
	hasExternal := len(sp.ExternalIPs)+len(sp.LoadBalancerIPs) > 0 || sp.NodePort != 0
	if !hasExternal {
		addEndpoints(rs, sp.Key, unionEndpoints(internal, nil))
		addAffinityUpdates(rs, sp, unionEndpoints(internal, nil))
		return
	}
	for _, ip := range append(append([]netip.Addr{}, sp.ExternalIPs...), sp.LoadBalancerIPs...) {
		if len(external) == 0 {
			put(mapNoEndpoints, ip, sp.Port, "goto "+chainReject)
			continue
		}
		put(mapServiceIPs, ip, sp.Port, "goto "+extChain)
	}
	if sp.NodePort != 0 {
		key := fmt.Sprintf("%s . %d", proto, sp.NodePort)
		if len(external) == 0 {
			rs.Maps[mapNoEPNodePort].Elements[key] = "goto " + chainReject
		} else {
			rs.Maps[mapNodePorts].Elements[key] = "goto " + extChain
		}
	}
	if len(external) > 0 {
		if sp.ExternalLocal {
			// Local: the client's address is kept, and traffic never
			// leaves the node.
			rs.Chains[extChain] = append(affinity(rs, sp, external), balance(sp.Key, external)...)
		} else {
			rs.Chains[extChain] = []string{"jump " + chainMasqMark, "goto " + svcChain}
			if len(internal) == 0 {
				rs.Chains[extChain] = append([]string{"jump " + chainMasqMark}, balance(sp.Key, external)...)
			}
		}
	}
	addEndpoints(rs, sp.Key, unionEndpoints(internal, external))
	addAffinityUpdates(rs, sp, unionEndpoints(internal, external))
}

// balance spreads new connections at random over the endpoints.
func balance(k PortKey, eps []Endpoint) []string {
	if len(eps) == 1 {
		return []string{"goto " + chainName("ep", k, epID(eps[0]))}
	}
	parts := make([]string, len(eps))
	for i, e := range eps {
		parts[i] = fmt.Sprintf("%d : goto %s", i, chainName("ep", k, epID(e)))
	}
	return []string{fmt.Sprintf("numgen random mod %d vmap { %s }", len(eps), strings.Join(parts, " , "))}
}

// addEndpoints adds each endpoint's chain: mark hairpin traffic (a pod
// reaching itself through the Service) for masquerade, then DNAT.
func addEndpoints(rs *Ruleset, k PortKey, eps []Endpoint) {
	for _, e := range eps {
		fam := "ip"
		target := fmt.Sprintf("%s:%d", e.Addr, e.Port)
		if e.Addr.Is6() {
			fam = "ip6"
			target = fmt.Sprintf("[%s]:%d", e.Addr, e.Port)
		}
		rs.Chains[chainName("ep", k, epID(e))] = []string{
			fmt.Sprintf("%s saddr %s jump %s", fam, e.Addr, chainMasqMark),
			fmt.Sprintf("meta l4proto %s dnat %s to %s", k.Protocol, fam, target),
		}
	}
}

func unionEndpoints(a, b []Endpoint) []Endpoint {
	seen := map[string]bool{}
	var out []Endpoint
	for _, e := range append(append([]Endpoint{}, a...), b...) {
		if !seen[epID(e)] {
			seen[epID(e)] = true
			out = append(out, e)
		}
	}
	sort.Slice(out, func(i, j int) bool { return epID(out[i]) < epID(out[j]) })
	return out
}

func epID(e Endpoint) string { return fmt.Sprintf("%s/%d", e.Addr, e.Port) }

// chainName is readable and unique: a hash of the full name keeps it unique
// whatever characters the Service's names hold.
func chainName(kind string, k PortKey, ep string) string {
	full := k.String() + "|" + ep
	sum := sha256.Sum256([]byte(kind + full))
	h := strings.ToLower(base32.StdEncoding.EncodeToString(sum[:])[:8])
	name := fmt.Sprintf("%s-%s-%s/%s/%s/%s", kind, h, k.Namespace, k.Name, k.Protocol, k.Port)
	if ep != "" {
		// nft names cannot hold ':' (IPv6 endpoints).
		name += "__" + strings.ReplaceAll(ep, ":", ".")
	}
	return name
}

// affinity sends a client that reached an endpoint within the timeout back
// to it (sessionAffinity: ClientIP): one dynamic set per endpoint remembers
// its clients, filled by the endpoint's chain.
func affinity(rs *Ruleset, sp ServicePort, eps []Endpoint) []string {
	if sp.AffinitySeconds <= 0 {
		return nil
	}
	var rules []string
	for _, e := range eps {
		fam, typ := "ip", "ipv4_addr"
		if e.Addr.Is6() {
			fam, typ = "ip6", "ipv6_addr"
		}
		set := affinitySet(sp.Key, e)
		rs.Sets[set] = Set{Type: typ, TimeoutSeconds: sp.AffinitySeconds}
		rules = append(rules, fmt.Sprintf("%s saddr @%s goto %s", fam, set, chainName("ep", sp.Key, epID(e))))
	}
	return rules
}

// addAffinityUpdates makes each endpoint chain record its client.
func addAffinityUpdates(rs *Ruleset, sp ServicePort, eps []Endpoint) {
	if sp.AffinitySeconds <= 0 {
		return
	}
	for _, e := range eps {
		set := affinitySet(sp.Key, e)
		if _, ok := rs.Sets[set]; !ok {
			continue
		}
		fam := "ip"
		if e.Addr.Is6() {
			fam = "ip6"
		}
		name := chainName("ep", sp.Key, epID(e))
		rules := rs.Chains[name]
		// Before the DNAT, which ends the chain.
		rs.Chains[name] = append(rules[:len(rules)-1:len(rules)-1], fmt.Sprintf("update @%s { %s saddr }", set, fam), rules[len(rules)-1])
	}
}

func affinitySet(k PortKey, e Endpoint) string {
	return "affinity-" + strings.TrimPrefix(chainName("ep", k, epID(e)), "ep-")
}
