package proxy

import (
	"crypto/sha256"
	"encoding/base32"
	"fmt"
	"hash/fnv"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/berthnet/berth/internal/nftrules"
)

// fragment is one Service port's part of the table: its own chains and
// dynamic sets, its elements in the shared maps, and its members of the
// shared sets (the hairpin pairs of its endpoints). The syncer keeps the
// fragment it applied per Service port and sends only the difference when
// one changes.
type fragment struct {
	chains map[string][]string
	// elems go in maps Service ports share (one may claim what another
	// has); own go in the endpoint maps, at keys of this port's blocks.
	elems, own []element
	// members are the endpoints whose hairpin pair this port needs.
	members []netip.Addr
	sets    map[string]nftrules.Set
	// blocks are the fragment's key ranges in the endpoint maps.
	blocks []blockKey
	alloc  *blocks
}

// element is a map element (with a value) or a set member.
type element struct {
	set, key, value string
}

func buildFragment(sp ServicePort, eps []Endpoint, b *blocks) fragment {
	f := fragment{chains: map[string][]string{}, alloc: b}
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
		f.elems = append(f.elems, element{name, fmt.Sprintf("%s . %s . %d", addr, proto, port), verdict})
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
		// pods) is masqueraded: pod-to-pod keeps its source. A family
		// without endpoints has nothing to DNAT, so no rule to mark.
		for _, fam := range []struct {
			match, set string
			v6         bool
		}{{"ip", setCluster, false}, {"ip6", setCluster6, true}} {
			if slices.ContainsFunc(internal, func(e Endpoint) bool { return e.Addr.Is6() == fam.v6 }) {
				rules = append(rules, fmt.Sprintf("%s saddr != @%s jump %s", fam.match, fam.set, chainMasqMark))
			}
		}
		f.chains[svcChain] = append(rules, balance(&f, sp, "svc", internal)...)
	}

	// Traffic from outside: external IPs, load-balancer IPs, node ports.
	hasExternal := len(sp.ExternalIPs)+len(sp.LoadBalancerIPs) > 0 || sp.NodePort != 0
	if hasExternal {
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
				f.elems = append(f.elems, element{mapNoEPNodePort, key, "goto " + chainReject})
			} else {
				f.elems = append(f.elems, element{mapNodePorts, key, "goto " + extChain})
			}
		}
		switch {
		case len(external) == 0:
		case sp.ExternalLocal:
			// Local: the client's address is kept, and traffic never
			// leaves the node.
			f.chains[extChain] = balance(&f, sp, "ext", external)
		case len(internal) == 0:
			f.chains[extChain] = append([]string{"jump " + chainMasqMark}, balance(&f, sp, "ext", external)...)
		default:
			f.chains[extChain] = []string{"jump " + chainMasqMark, "goto " + svcChain}
		}
	}
	// Hairpin: a pod that reaches itself through the Service is
	// masqueraded, so the reply comes back through the node. Only this
	// node's endpoints can be their own clients here: a pod's packets meet
	// the rules of its own node.
	for _, e := range unionEndpoints(internal, external) {
		if e.Local {
			f.members = append(f.members, e.Addr)
		}
	}
	return f
}

// hairpinMember is the hairpin set element of an endpoint.
func hairpinMember(a netip.Addr) element {
	set := setHairpin
	if a.Is6() {
		set = setHairpin6
	}
	return element{set: set, key: a.String() + " . " + a.String()}
}

// balance spreads new connections at random over the endpoints, per
// family: one rule draws a number below N and looks the endpoint up in the
// shared map endpoints4 (or endpoints6), where this Service port has a
// block of keys. An endpoint that is replaced changes an element, not a
// rule: the kernel checks the whole table for loops on every commit that
// adds a rule, and not on one that only changes data. A rule of the other
// family does nothing to a packet (its DNAT is skipped). With ClientIP
// affinity each endpoint gets a chain (see affinity) and a cascade of
// "numgen random mod K 0" rules jumps to one: uniform, the first of N
// taking 1/N, the next 1/(N-1) of the rest, and so on.
func balance(f *fragment, sp ServicePort, chain string, eps []Endpoint) []string {
	var rules []string
	for _, fam := range []struct {
		ip, nfproto, m string
		v6             bool
	}{{"ip", "ipv4", endpointMap(mapEndpoints, sp.Key), false}, {"ip6", "ipv6", endpointMap(mapEndpoints6, sp.Key), true}} {
		var of []Endpoint
		for _, e := range eps {
			if e.Addr.Is6() == fam.v6 {
				of = append(of, e)
			}
		}
		if len(of) == 0 {
			continue
		}
		if sp.AffinitySeconds > 0 {
			rules = append(rules, affinity(f, sp, of, fam.ip)...)
			for i, e := range of {
				cond := ""
				if left := len(of) - i; left > 1 {
					cond = fmt.Sprintf("numgen random mod %d 0 ", left)
				}
				rules = append(rules, fmt.Sprintf("meta nfproto %s %sgoto %s", fam.nfproto, cond, chainName("ep", sp.Key, epID(e))))
			}
			continue
		}
		k := blockKey{port: sp.Key, chain: chain, v6: fam.v6}
		start := f.alloc.block(k, len(of))
		f.blocks = append(f.blocks, k)
		for i, e := range of {
			f.own = append(f.own, element{fam.m, strconv.FormatUint(uint64(start)+uint64(i), 10), fmt.Sprintf("%s . %d", e.Addr, e.Port)})
		}
		rules = append(rules, fmt.Sprintf("meta l4proto %s dnat %s to numgen random mod %d offset %d map @%s", sp.Key.Protocol, fam.ip, len(of), start, fam.m))
	}
	return rules
}

// dnat is the rule that sends a packet to e.
func dnat(proto, fam string, e Endpoint) string {
	return fmt.Sprintf("meta l4proto %s dnat %s to %s", proto, fam, netip.AddrPortFrom(e.Addr, e.Port))
}

func unionEndpoints(a, b []Endpoint) []Endpoint {
	seen := map[netip.Addr]bool{}
	var out []Endpoint
	for _, e := range append(append([]Endpoint{}, a...), b...) {
		if !seen[e.Addr] {
			seen[e.Addr] = true
			out = append(out, e)
		}
	}
	return out
}

func epID(e Endpoint) string { return netip.AddrPortFrom(e.Addr, e.Port).String() }

// chainName is readable and unique: a hash of the full name keeps it unique
// whatever characters the Service's names hold.
func chainName(kind string, k PortKey, ep string) string {
	full := k.String() + "|" + ep
	sum := sha256.Sum256([]byte(kind + full))
	h := strings.ToLower(base32.StdEncoding.EncodeToString(sum[:])[:8])
	name := fmt.Sprintf("%s-%s-%s/%s/%s/%s", kind, h, k.Namespace, k.Name, k.Protocol, k.Port)
	if ep != "" {
		// nft names cannot hold ':' or brackets (IPv6 endpoints).
		name += "__" + strings.NewReplacer(":", ".", "[", "", "]", "").Replace(ep)
	}
	return name
}

// affinity sends a client that reached an endpoint within the timeout back
// to it (sessionAffinity: ClientIP): one dynamic set per endpoint remembers
// its clients, filled by the endpoint's chain, which then DNATs.
func affinity(f *fragment, sp ServicePort, eps []Endpoint, fam string) []string {
	typ := "ipv4_addr"
	if fam == "ip6" {
		typ = "ipv6_addr"
	}
	var rules []string
	for _, e := range eps {
		chain := chainName("ep", sp.Key, epID(e))
		set := affinitySet(sp.Key, e)
		if f.sets == nil {
			f.sets = map[string]nftrules.Set{}
		}
		f.sets[set] = nftrules.Set{Type: typ, TimeoutSeconds: sp.AffinitySeconds}
		f.chains[chain] = []string{
			fmt.Sprintf("update @%s { %s saddr }", set, fam),
			dnat(sp.Key.Protocol, fam, e),
		}
		rules = append(rules, fmt.Sprintf("%s saddr @%s goto %s", fam, set, chain))
	}
	return rules
}

func affinitySet(k PortKey, e Endpoint) string {
	return "affinity-" + strings.TrimPrefix(chainName("ep", k, epID(e)), "ep-")
}

// endpointMap is the shard of the endpoint maps that holds k's endpoints.
func endpointMap(prefix string, k PortKey) string {
	h := fnv.New32a()
	h.Write([]byte(k.String()))
	return fmt.Sprintf("%s%02d", prefix, h.Sum32()%endpointShards)
}
