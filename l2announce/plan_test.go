package l2announce

import (
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/labels"
)

func TestDecide(t *testing.T) {
	g := &Group{Key: GroupKey("lan", "pool")}
	nodes := []NodeInfo{{Name: "node1"}, {Name: "node2"}, {Name: "node3"}}
	ready := map[string]map[uint64]bool{"node1": {g.Key: true}, "node2": {g.Key: true}, "node3": {}}
	addrs := []*Address{
		{Addr: netip.MustParseAddr("198.18.0.200"), Groups: []*Group{g}},
		{Addr: netip.MustParseAddr("198.18.0.201"), Groups: []*Group{g}, Local: map[string]bool{"node3": true}},
	}
	d := Decide(addrs, nodes, ready)
	a, b := d[addrs[0].Addr], d[addrs[1].Addr]
	if a.Owner != "node1" && a.Owner != "node2" || a.Reporter != "" {
		t.Errorf("%s: %+v; want node1 or node2 to own it", addrs[0].Addr, a)
	}
	// The only node with a local endpoint is not ready: nobody announces,
	// and exactly one live agent says so.
	if b.Owner != "" || b.Reporter == "" {
		t.Errorf("%s: %+v; want no owner and a reporter", addrs[1].Addr, b)
	}
	// The agents agree: the view, not who computes it, decides.
	if again := Decide(addrs, nodes, ready); fmt.Sprint(again) != fmt.Sprint(d) {
		t.Errorf("two computations differ: %v and %v", d, again)
	}
	// The owner dies: the address moves to the other candidate.
	delete(ready, a.Owner)
	if now := Decide(addrs, nodes, ready)[addrs[0].Addr]; now.Owner == a.Owner || now.Owner == "" {
		t.Errorf("after %s died: %+v", a.Owner, now)
	}
}

func TestReadyGroups(t *testing.T) {
	start := time.Unix(1000, 0)
	settle := 400 * time.Millisecond
	mac := net.HardwareAddr{2, 0, 0, 0, 0, 1}
	links := []Link{
		{Name: "eth0", MAC: mac, Up: true, Prefixes: []netip.Prefix{netip.MustParsePrefix("198.18.0.11/24")}},
		{Name: "eth1", MAC: mac, Prefixes: []netip.Prefix{netip.MustParsePrefix("10.1.0.11/24")}},
	}
	lan := &Group{Key: 1, Samples: []netip.Addr{netip.MustParseAddr("198.18.0.200")}}
	other := &Group{Key: 2, Samples: []netip.Addr{netip.MustParseAddr("10.1.0.200")}} // eth1 has no carrier
	edge := &Group{Key: 3, Samples: lan.Samples, NodeSelectors: []labels.Selector{labels.SelectorFromSet(labels.Set{"edge": "yes"})}}
	groups := []*Group{lan, other, edge}
	r := Readiness{Started: start, UpSince: map[string]time.Time{"eth0": start}, Settle: settle}
	for _, c := range []struct {
		at   time.Duration
		up   time.Time
		want string
	}{
		{at: 100 * time.Millisecond, up: start, want: "[]"},                  // just started: not settled
		{at: settle, up: start, want: "[1]"},                                 // settled; eth1 down, not edge
		{at: time.Second, up: start.Add(900 * time.Millisecond), want: "[]"}, // carrier just came back
		{at: 2 * time.Second, up: start.Add(900 * time.Millisecond), want: "[1]"},
	} {
		r.UpSince["eth0"] = c.up
		if got := fmt.Sprint(ReadyGroups(groups, nil, links, r, start.Add(c.at))); got != c.want {
			t.Errorf("at %s (eth0 up since %s): %s, want %s", c.at, c.up.Sub(start), got, c.want)
		}
	}
	if got := fmt.Sprint(ReadyGroups(groups, map[string]string{"edge": "yes"}, links, r, start.Add(5*time.Second))); got != "[1 3]" {
		t.Errorf("an edge node: %s", got)
	}
}
