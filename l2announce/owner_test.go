package l2announce

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"
)

func addrs(n int) []netip.Addr {
	var out []netip.Addr
	a := netip.MustParseAddr("198.51.100.0")
	for range n {
		a = a.Next()
		out = append(out, a)
	}
	return out
}

// Every agent agrees whatever order it lists the candidates in; when a node
// goes, only its addresses move, and they spread over the others.
func TestOwner(t *testing.T) {
	nodes := []string{"node1", "node2", "node3", "node4", "node5"}
	before := map[netip.Addr]string{}
	count := map[string]int{}
	for _, a := range addrs(1000) {
		o := Owner(a, nodes)
		shuffled := append([]string(nil), nodes...)
		rand.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		if o2 := Owner(a, shuffled); o2 != o {
			t.Fatalf("%s: %s with one order, %s with another", a, o, o2)
		}
		before[a] = o
		count[o]++
	}
	for _, n := range nodes {
		if count[n] < 120 || count[n] > 280 {
			t.Errorf("%s owns %d of 1000 addresses; want about 200 each: %v", n, count[n], count)
		}
	}
	rest := []string{"node1", "node2", "node4", "node5"}
	moved := map[string]int{}
	for a, o := range before {
		now := Owner(a, rest)
		if o != "node3" && now != o {
			t.Fatalf("%s moved from %s to %s though %s is still there", a, o, now, o)
		}
		if o == "node3" {
			moved[now]++
		}
	}
	for _, n := range rest {
		if moved[n] == 0 {
			t.Errorf("none of node3's addresses went to %s: %v", n, moved)
		}
	}
	if Owner(netip.MustParseAddr("198.51.100.1"), nil) != "" {
		t.Error("an owner without candidates")
	}
}

func ExampleOwner() {
	fmt.Println(Owner(netip.MustParseAddr("198.51.100.10"), []string{"node1", "node2", "node3"}) != "")
	// Output: true
}
