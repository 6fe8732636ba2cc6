package netpol

import (
	"crypto/sha256"
	"encoding/base32"
	"strings"

	"github.com/berthnet/berth/internal/nftrules"
)

// Table is the nftables table NetworkPolicy owns alone (family inet).
const Table = "berth-netpol"

// rule is one rule in nft syntax, with an optional comment.
type rule struct {
	text, comment string
}

// String is the rule as nft writes it, comment last.
func (r rule) String() string {
	if r.comment == "" {
		return r.text
	}
	return r.text + ` comment "` + r.comment + `"`
}

func texts(rules []rule) []string {
	out := make([]string, len(rules))
	for i, r := range rules {
		out[i] = r.String()
	}
	return out
}

// The fixed objects of the table.
const (
	chainEgress     = "egress"
	chainIngress    = "ingress"
	mapEgressPods4  = "egress-pods4"
	mapEgressPods6  = "egress-pods6"
	mapIngressPods4 = "ingress-pods4"
	mapIngressPods6 = "ingress-pods6"
	setNodeIPs4     = "node-ips4"
	setNodeIPs6     = "node-ips6"
	setLocalCIDRs4  = "local-cidrs4"
	setLocalCIDRs6  = "local-cidrs6"
	// CounterUnknown counts the packets dropped because they came from or
	// went to an address in the node's pod ranges that is not (yet) a pod
	// the ruleset knows, while policies exist.
	CounterUnknown = "unknown-pod"
	// maxCountersPerRule bounds the named counters one drop rule
	// increments (one per isolating policy): the kernel caps a rule's
	// expressions.
	maxCountersPerRule = 8
)

// acceptNeighbour lets IPv6 neighbour discovery through, which an
// egress-isolated pod needs to reach anything at all.
const acceptNeighbour = "icmpv6 type { nd-router-solicit, nd-router-advert, nd-neighbor-solicit, nd-neighbor-advert } accept"

// BaseChains are the hooks, both at filter priority (0), so after the
// service proxy's DNAT at prerouting (dstnat, -100): policies see the
// backend pod's address. forward sees pod traffic routed through the node
// and, with br_netfilter, traffic bridged between two pods on berth0; input
// sees a pod's traffic to the node itself, which is the pod's egress.
// Replies of allowed connections pass by conntrack; the node's own
// addresses always reach its pods.
func BaseChains() []nftrules.BaseChain {
	head := []string{"ct state established,related accept", acceptNeighbour}
	return []nftrules.BaseChain{
		{Name: "forward", Type: "filter", Hook: "forward", Priority: "filter", Rules: append(append([]string{}, head...),
			"ip saddr @"+setNodeIPs4+" accept",
			"ip6 saddr @"+setNodeIPs6+" accept",
			"jump "+chainEgress,
			"jump "+chainIngress)},
		// The node talking to itself (also from its berth0 address, which
		// is in the pod range) comes over lo and is not a pod's egress.
		{Name: "input", Type: "filter", Hook: "input", Priority: "filter", Rules: append(append([]string{}, head...),
			`iifname "lo" accept`,
			"jump "+chainEgress)},
	}
}

// fixedChains are the dispatch chains: a pod's address leads to its own
// chain (goto: its return ends the dispatch) or, when the pod is not
// isolated in that direction, returns. An address in the node's pod ranges
// that is no known pod is dropped (local-cidrs* are empty while no policy
// exists): see docs/netpol.md, no race at pod start.
func fixedChains() map[string][]string {
	drop := `counter name "` + CounterUnknown + `" drop comment "unknown pod address"`
	return map[string][]string{
		chainEgress: {
			"ip saddr vmap @" + mapEgressPods4,
			"ip6 saddr vmap @" + mapEgressPods6,
			"ip saddr @" + setLocalCIDRs4 + " " + drop,
			"ip6 saddr @" + setLocalCIDRs6 + " " + drop,
		},
		chainIngress: {
			"ip daddr vmap @" + mapIngressPods4,
			"ip6 daddr vmap @" + mapIngressPods6,
			"ip daddr @" + setLocalCIDRs4 + " " + drop,
			"ip6 daddr @" + setLocalCIDRs6 + " " + drop,
		},
	}
}

func emptyRuleset() nftrules.Ruleset {
	rs := nftrules.Ruleset{
		Base:   BaseChains(),
		Chains: fixedChains(),
		Sets: map[string]nftrules.Set{
			setNodeIPs4:    {Type: "ipv4_addr"},
			setNodeIPs6:    {Type: "ipv6_addr"},
			setLocalCIDRs4: {Type: "ipv4_addr", Interval: true},
			setLocalCIDRs6: {Type: "ipv6_addr", Interval: true},
		},
		Maps: map[string]nftrules.Map{
			mapEgressPods4:  {Type: "ipv4_addr : verdict", Elements: map[string]string{}},
			mapEgressPods6:  {Type: "ipv6_addr : verdict", Elements: map[string]string{}},
			mapIngressPods4: {Type: "ipv4_addr : verdict", Elements: map[string]string{}},
			mapIngressPods6: {Type: "ipv6_addr : verdict", Elements: map[string]string{}},
		},
		Counters: []string{CounterUnknown},
	}
	return rs
}

// objName builds a readable object name, "in-x/a": prefix, then
// namespace/name, then suffix. nft names must start with a letter and the
// kernel caps them at 256 bytes; past 200 the name part is a hash.
func objName(prefix, ns, name, suffix string) string {
	n := prefix + ns + "/" + name + suffix
	if len(n) <= 200 {
		return n
	}
	h := sha256.Sum256([]byte(ns + "/" + name))
	return prefix + strings.ToLower(base32.StdEncoding.EncodeToString(h[:10])) + suffix
}

// Stats counts a ruleset's objects, for metrics.
type Stats struct {
	Chains, Rules, Sets, SetElements, MapElements int
}

// StatsOf counts a ruleset's objects (base chains included).
func StatsOf(rs nftrules.Ruleset) Stats {
	st := Stats{Chains: len(rs.Chains) + len(rs.Base), Sets: len(rs.Sets) + len(rs.Maps)}
	for _, rules := range rs.Chains {
		st.Rules += len(rules)
	}
	for _, b := range rs.Base {
		st.Rules += len(b.Rules)
	}
	for _, s := range rs.Sets {
		st.SetElements += len(s.Elements)
	}
	for _, m := range rs.Maps {
		st.MapElements += len(m.Elements)
	}
	return st
}
