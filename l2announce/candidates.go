package l2announce

import (
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

// Candidates are the nodes that may announce an address: alive (heard in
// the membership, which runs over the announcing LAN, so a node whose link
// is down drops out with it), matching one of the selectors (none: all),
// not excluded from external load balancers, network available, and, when
// local is not nil (externalTrafficPolicy: Local), holding a ready endpoint
// of the Service. Sorted by name.
func Candidates(nodes []NodeInfo, selectors []labels.Selector, alive []string, local map[string]bool) []string {
	live := make(map[string]bool, len(alive))
	for _, n := range alive {
		live[n] = true
	}
	var out []string
	for _, n := range nodes {
		if !live[n.Name] || n.NetworkUnavailable {
			continue
		}
		set := labels.Set(n.Labels)
		if _, excluded := n.Labels[ExcludeLabel]; excluded {
			continue
		}
		if local != nil && !local[n.Name] {
			continue
		}
		ok := len(selectors) == 0
		for _, s := range selectors {
			if s.Matches(set) {
				ok = true
				break
			}
		}
		if ok {
			out = append(out, n.Name)
		}
	}
	sort.Strings(out)
	return out
}
