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
	}
	alive := []string{"node1", "node2", "node3", "node4", "node5"} // node6 is silent
	edge := labels.SelectorFromSet(labels.Set{"edge": "yes"})
	for _, c := range []struct {
		name      string
		selectors []labels.Selector
		local     map[string]bool
		want      string
	}{
		{"every node", nil, nil, "[node1 node4 node5]"},
		{"edge nodes", []labels.Selector{edge}, nil, "[node1 node5]"},
		{"Local policy", []labels.Selector{edge}, map[string]bool{"node5": true, "node6": true}, "[node5]"},
		{"Local policy, no endpoint anywhere", nil, map[string]bool{}, "[]"},
	} {
		if got := fmt.Sprint(Candidates(nodes, c.selectors, alive, c.local)); got != c.want {
			t.Errorf("%s: %s, want %s", c.name, got, c.want)
		}
	}
	// Owner and Candidates together: the owner of an address is one of
	// the candidates, and every agent computes the same.
	cands := Candidates(nodes, []labels.Selector{edge}, alive, nil)
	o := Owner(netip.MustParseAddr("198.18.0.200"), cands)
	if o != "node1" && o != "node5" {
		t.Errorf("owner %q is not a candidate of %v", o, cands)
	}
}
