package l2announce

import (
	"fmt"
	"net/netip"
	"testing"

	"k8s.io/apimachinery/pkg/labels"
)

func TestCandidates(t *testing.T) {
	nodes := []NodeInfo{
		{Name: "node1", Labels: map[string]string{"edge": "yes"}},
		{Name: "node2", Labels: map[string]string{"edge": "yes", ExcludeLabel: ""}},
		{Name: "node3", Labels: map[string]string{"edge": "yes"}, NetworkUnavailable: true},
		{Name: "node4", Labels: map[string]string{"edge": "no"}},
		{Name: "node5", Labels: map[string]string{"edge": "yes"}},
		{Name: "node6", Labels: map[string]string{"edge": "yes"}},
		{Name: "node7", Labels: map[string]string{"edge": "yes"}},
	}
	all := &Group{Key: GroupKey("all", "pool")}
	edge := &Group{Key: GroupKey("edge", "pool"), NodeSelectors: []labels.Selector{labels.SelectorFromSet(labels.Set{"edge": "yes"})}}
	both := map[uint64]bool{all.Key: true, edge.Key: true}
	ready := map[string]map[uint64]bool{ // node6 is silent
		"node1": both, "node2": both, "node3": both, "node4": both, "node5": both,
		"node7": {}, // alive, but no announcing interface up
	}
	for _, c := range []struct {
		name   string
		groups []*Group
		local  map[string]bool
		want   string
	}{
		{"every node", []*Group{all}, nil, "[node1 node4 node5]"},
		{"edge nodes", []*Group{edge}, nil, "[node1 node5]"},
		{"Local policy", []*Group{edge}, map[string]bool{"node5": true, "node6": true}, "[node5]"},
		{"Local policy, no endpoint anywhere", []*Group{all}, map[string]bool{}, "[]"},
		{"no group", nil, nil, "[]"},
	} {
		a := &Address{Addr: netip.MustParseAddr("198.18.0.200"), Groups: c.groups, Local: c.local}
		if got := fmt.Sprint(Candidates(a, nodes, ready)); got != c.want {
			t.Errorf("%s: %s, want %s", c.name, got, c.want)
		}
	}
	// A node ready only for the other group is no candidate for this one.
	ready["node4"] = map[uint64]bool{edge.Key: true}
	a := &Address{Addr: netip.MustParseAddr("198.18.0.200"), Groups: []*Group{all}}
	if got := fmt.Sprint(Candidates(a, nodes, ready)); got != "[node1 node5]" {
		t.Errorf("node4 ready for edge only: %s", got)
	}
	// Owner and Candidates together: the owner of an address is one of
	// the candidates, and every agent computes the same.
	cands := Candidates(a, nodes, ready)
	o := Owner(a.Addr, cands)
	if o != "node1" && o != "node5" {
		t.Errorf("owner %q is not a candidate of %v", o, cands)
	}
}
