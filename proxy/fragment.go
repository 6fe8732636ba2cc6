package proxy

import (
	"crypto/sha256"
	"encoding/base32"
	"fmt"
	"net/netip"
	"strings"
)

// fragment is one Service port's part of the table: its own chains and
// dynamic sets, its elements in the shared maps, and its members of the
// shared sets (the hairpin pairs of its endpoints). The syncer keeps the
// fragment it applied per Service port and sends only the difference when
// one changes.
type fragment struct {
	chains  map[string][]string
	elems   []element
	members []element
	sets    map[string]Set
}

// element is a map element (with a value) or a set member.
type element struct {
	set, key, value string
}

func buildFragment(sp ServicePort, eps []Endpoint) fragment {
	f := fragment{chains: map[string][]string{}}
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
		// pods) is masqueraded: pod-to-pod keeps its source.
		for _, fam := range []struct{ match, set string }{{"ip", setCluster}, {"ip6", setCluster6}} {
			rules = append(rules, fmt.Sprintf("%s saddr != @%s jump %s", fam.match, fam.set, chainMasqMark))
		}
		f.chains[svcChain] = append(rules, balance(&f, sp, internal)...)
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
			f.chains[extChain] = balance(&f, sp, external)
		case len(internal) == 0:
			f.chains[extChain] = append([]string{"jump " + chainMasqMark}, balance(&f, sp, external)...)
		default:
			f.chains[extChain] = []string{"jump " + chainMasqMark, "goto " + svcChain}
		}
	}
	// Hairpin: a pod that reaches itself through the Service is
	// masqueraded, so the reply comes back through the node.
	for _, e := range unionEndpoints(internal, external) {
		set := setHairpin
		if e.Addr.Is6() {
			set = setHairpin6
		}
		f.members = append(f.members, element{set: set, key: e.Addr.String() + " . " + e.Addr.String()})
	}
	return f
}

// balance spreads new connections at random over the endpoints, per
// family, as a cascade: the first of N endpoints takes a connection with
// probability 1/N, the next 1/(N-1) of the rest, and so on, the last all
// that is left, which is uniform. Each rule draws its own number, and the
// cascade needs no set: anonymous maps would cost the kernel a walk of the
// table's sets for every one created, quadratic in the Services. A rule of
// the other family's cascade does nothing to a packet (its DNAT is skipped)
// and the packet goes on to its own family's rules. With ClientIP affinity
// each endpoint gets a chain (see affinity) and the cascade jumps to it.
func balance(f *fragment, sp ServicePort, eps []Endpoint) []string {
	var rules []string
	for _, fam := range []struct {
		ip, nfproto string
		v6          bool
	}{{"ip", "ipv4", false}, {"ip6", "ipv6", true}} {
		var of []Endpoint
		for _, e := range eps {
			if e.Addr.Is6() == fam.v6 {
				of = append(of, e)
			}
		}
		if len(of) == 0 {
			continue
		}
		var pick []string
		if sp.AffinitySeconds > 0 {
			rules = append(rules, affinity(f, sp, of, fam.ip)...)
			for _, e := range of {
				pick = append(pick, fmt.Sprintf("meta nfproto %s %%sgoto %s", fam.nfproto, chainName("ep", sp.Key, epID(e))))
			}
		} else {
			for _, e := range of {
				pick = append(pick, "%s"+dnat(sp.Key.Protocol, fam.ip, e))
			}
		}
		for i, p := range pick {
			cond := ""
			if left := len(pick) - i; left > 1 {
				cond = fmt.Sprintf("numgen random mod %d 0 ", left)
			}
			rules = append(rules, fmt.Sprintf(p, cond))
		}
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
			f.sets = map[string]Set{}
		}
		f.sets[set] = Set{Type: typ, TimeoutSeconds: sp.AffinitySeconds}
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
