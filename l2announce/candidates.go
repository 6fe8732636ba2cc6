package l2announce

import (
	"hash/fnv"
	"net/netip"
	"sort"

	"k8s.io/apimachinery/pkg/labels"
)

// ExcludeLabel keeps a node out of external load balancing, as Kubernetes
// defines it.
const ExcludeLabel = "node.kubernetes.io/exclude-from-external-load-balancers"

// NodeInfo is what the choice of announcers needs to know of a node.
type NodeInfo struct {
	Name   string
	Labels map[string]string
	// NetworkUnavailable is the Node's NetworkUnavailable condition.
	NetworkUnavailable bool
}

// Group is one L2Announcement's hold on one IPPool: the unit an agent says
// in its heartbeats it is ready to announce (selected by the node
// selectors, an announcing interface with carrier, settled after start).
type Group struct {
	Key          uint64
	Announcement string
	Pool         string
	// NodeSelectors: matching any one is enough; none: every node.
	NodeSelectors []labels.Selector
	// Interfaces are names or shell patterns; none: the default choice
	// (see Interfaces).
	Interfaces []string
	// Samples are an address of each of the pool's ranges, for the
	// default choice of interface.
	Samples []netip.Addr
}

// GroupKey names a group in heartbeats.
func GroupKey(announcement, pool string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(announcement))
	h.Write([]byte{0})
	h.Write([]byte(pool))
	return h.Sum64()
}

// Selects reports whether the group's node selectors take a node with
// these labels.
func (g *Group) Selects(nodeLabels map[string]string) bool {
	if len(g.NodeSelectors) == 0 {
		return true
	}
	set := labels.Set(nodeLabels)
	for _, s := range g.NodeSelectors {
		if s.Matches(set) {
			return true
		}
	}
	return false
}

// Address is one LoadBalancer address Berth assigned from a pool that an
// L2Announcement covers.
type Address struct {
	Addr netip.Addr
	// Services hold it (namespace/name, sorted; more than one when shared).
	Services []string
	// Groups are the L2Announcements covering its pool.
	Groups []*Group
	// Local is nil unless every Service on the address has
	// externalTrafficPolicy Local; then it holds the nodes with a ready
	// endpoint of every one of them.
	Local map[string]bool
	// Announced: a node announced it before (the Services' records say
	// so), so a new owner takes it over at once, without the conflict
	// probe a newly assigned address gets.
	Announced bool
	// Reported is what the Services' records say of the address now; nil
	// when they say nothing or disagree.
	Reported *Report
}

// Candidates are the nodes that may announce a: ready for one of its
// groups (in ready, which maps every live agent, this one included, to
// the groups it is ready for) and selected by that group's node
// selectors, not excluded from external load balancers, network
// available, and, with policy Local, holding a ready endpoint. Sorted.
func Candidates(a *Address, nodes []NodeInfo, ready map[string]map[uint64]bool) []string {
	var out []string
	for i := range nodes {
		n := &nodes[i]
		groups, live := ready[n.Name]
		if !live || n.NetworkUnavailable {
			continue
		}
		if _, excluded := n.Labels[ExcludeLabel]; excluded {
			continue
		}
		if a.Local != nil && !a.Local[n.Name] {
			continue
		}
		for _, g := range a.Groups {
			if groups[g.Key] && g.Selects(n.Labels) {
				out = append(out, n.Name)
				break
			}
		}
	}
	sort.Strings(out)
	return out
}
