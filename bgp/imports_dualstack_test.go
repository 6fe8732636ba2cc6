package bgp

import (
	"context"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	api "github.com/osrg/gobgp/v4/api"
)

// A dual-stack cluster's pod ranges make an import policy GoBGP takes: a
// prefix set holds one family, so the ranges of each family have their
// own. With one set for both, every apply failed ("multiple families") and
// no learned pod route was installed in mode bgp (found by the lab's
// TestPodNetwork/bgp). A failed generation leaves no sets behind.
func TestImportPolicyDualStack(t *testing.T) {
	s, ctx := runSpeaker(t)
	ranges := []PodRange{
		{Prefix: netip.MustParsePrefix("10.244.1.0/24"), Node: "node1", Addrs: []netip.Addr{netip.MustParseAddr("198.18.0.11")}},
		{Prefix: netip.MustParsePrefix("fd00:10:244:1::/64"), Node: "node1", Addrs: []netip.Addr{netip.MustParseAddr("fd00:198:18::11")}},
		{Prefix: netip.MustParsePrefix("10.244.2.0/24"), Node: "node2", Addrs: []netip.Addr{netip.MustParseAddr("198.18.0.12")}},
		{Prefix: netip.MustParsePrefix("fd00:10:244:2::/64"), Node: "node2", Addrs: []netip.Addr{netip.MustParseAddr("fd00:198:18::12")}},
	}
	// A peer nobody answers for (the test runs in its own network
	// namespace): the server runs, so the policy is made.
	peers := []*Peer{{Name: "quiet", Address: netip.MustParseAddr("192.0.2.1"), Port: 179, PeerASN: 64500, LocalASN: 64512, HoldTime: ptr(9 * time.Second)}}
	plan := Plan{Peers: peers, Exports: map[string][]Export{}, PodRanges: ranges, NextHop4: netip.MustParseAddr("198.18.0.11")}
	if err := s.Apply(ctx, plan); err != nil {
		t.Fatalf("apply with dual-stack pod ranges: %v", err)
	}
	sets := prefixSets(ctx, t, s)
	// Written out: one set per range, and one of all ranges per family.
	want := map[string][]string{
		"range-0": {"10.244.1.0/24"}, "range-1": {"10.244.2.0/24"},
		"range-2": {"fd00:10:244:1::/64"}, "range-3": {"fd00:10:244:2::/64"},
		"pods-4": {"10.244.1.0/24", "10.244.2.0/24"}, "pods-6": {"fd00:10:244:1::/64", "fd00:10:244:2::/64"},
	}
	if len(sets) != len(want) {
		t.Errorf("prefix sets %v, want %v", sets, want)
	}
	for k, v := range want {
		if !slices.Equal(sets[k], v) {
			t.Errorf("prefix set %s: %v, want %v", k, sets[k], v)
		}
	}
}

// prefixSets lists the import policy's prefix sets by kind and index
// ("range-0", "pods-4"), the generation cut off, with their prefixes sorted.
func prefixSets(ctx context.Context, t *testing.T, s *Speaker) map[string][]string {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string][]string{}
	err := s.srv.ListDefinedSet(ctx, &api.ListDefinedSetRequest{DefinedType: api.DefinedType_DEFINED_TYPE_PREFIX}, func(ds *api.DefinedSet) {
		name, ok := strings.CutPrefix(ds.Name, "berth-import-")
		if !ok {
			return
		}
		_, kind, _ := strings.Cut(name, "-") // the generation
		for _, p := range ds.Prefixes {
			out[kind] = append(out[kind], p.IpPrefix)
		}
		slices.Sort(out[kind])
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}
