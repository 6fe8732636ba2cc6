// The import policy: which learned routes inside the nodes' pod ranges
// the speaker accepts, as one GoBGP policy replaced when the ranges or
// their owners change, and what it refuses, read back per peer.

package bgp

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"

	"github.com/osrg/gobgp/v4/api"
	"github.com/osrg/gobgp/v4/pkg/apiutil"
	"github.com/osrg/gobgp/v4/pkg/packet/bgp"
	"github.com/osrg/gobgp/v4/pkg/server"
)

// Reasons a learned route is refused (the v1alpha1 condition reasons).
const (
	// RefusedNextHopNotOwner: a node's pod range whose next hop is not
	// that node's address.
	RefusedNextHopNotOwner = "NextHopNotOwner"
	// RefusedInsidePodRange: a route inside a node's pod range, not the
	// range itself (a more specific one would win over it).
	RefusedInsidePodRange = "InsidePodRange"
)

// Refusal is one route a peer sent that the speaker refused.
type Refusal struct {
	Prefix  netip.Prefix
	NextHop netip.Addr
	// Reason is RefusedNextHopNotOwner or RefusedInsidePodRange.
	Reason string
	// Range is the pod range the route falls in, Owner its node and
	// OwnerAddrs the next hops it may have.
	Range      netip.Prefix
	Owner      string
	OwnerAddrs []netip.Addr
}

// String says what was refused and why, for a person.
func (r Refusal) String() string {
	if r.Reason == RefusedInsidePodRange {
		return fmt.Sprintf("%s via %s: inside node %s's pod range %s", r.Prefix, r.NextHop, r.Owner, r.Range)
	}
	return fmt.Sprintf("%s via %s: node %s's pod range, whose next hop must be %s", r.Prefix, r.NextHop, r.Owner, joinAddrs(r.OwnerAddrs))
}

func joinAddrs(as []netip.Addr) string {
	if len(as) == 0 {
		return "(the node has no address of that family)"
	}
	s := make([]string, len(as))
	for i, a := range as {
		s[i] = a.String()
	}
	return strings.Join(s, " or ")
}

// rangeIndex finds the pod range a prefix equals or falls in, in a map
// lookup per distinct range length: States runs it over every route every
// peer sent, every few seconds.
type rangeIndex struct {
	exact        map[netip.Prefix]PodRange
	bits4, bits6 []int
}

// newRangeIndex indexes normalised ranges; it is not changed afterwards.
func newRangeIndex(ranges []PodRange) *rangeIndex {
	ix := &rangeIndex{exact: map[netip.Prefix]PodRange{}}
	for _, r := range ranges {
		ix.exact[r.Prefix] = r
		lens := &ix.bits4
		if r.Prefix.Addr().Is6() {
			lens = &ix.bits6
		}
		if !slices.Contains(*lens, r.Prefix.Bits()) {
			*lens = append(*lens, r.Prefix.Bits())
		}
	}
	return ix
}

// classify says why the import policy refuses a route (ok false: it
// does not). It is the policy's decision restated for status; the policy
// itself runs in GoBGP.
func classify(ix *rangeIndex, pf netip.Prefix, nh netip.Addr) (Refusal, bool) {
	if ix == nil {
		return Refusal{}, false
	}
	pf = pf.Masked()
	if r, ok := ix.exact[pf]; ok {
		if slices.Contains(r.Addrs, nh) {
			return Refusal{}, false
		}
		return Refusal{Prefix: pf, NextHop: nh, Reason: RefusedNextHopNotOwner, Range: r.Prefix, Owner: r.Node, OwnerAddrs: r.Addrs}, true
	}
	lens := ix.bits4
	if pf.Addr().Is6() {
		lens = ix.bits6
	}
	for _, b := range lens {
		if b >= pf.Bits() {
			continue
		}
		if r, ok := ix.exact[netip.PrefixFrom(pf.Addr(), b).Masked()]; ok {
			return Refusal{Prefix: pf, NextHop: nh, Reason: RefusedInsidePodRange, Range: r.Prefix, Owner: r.Node, OwnerAddrs: r.Addrs}, true
		}
	}
	return Refusal{}, false
}

// importShape is what the import policy is made from: when it stays, the
// policy stays.
func importShape(ranges []PodRange) string {
	var b strings.Builder
	for _, r := range ranges {
		fmt.Fprintln(&b, r.Prefix, r.Addrs)
	}
	return b.String()
}

// normalRanges sorts the ranges and their addresses, keeping only the
// addresses of each range's family.
func normalRanges(in []PodRange) []PodRange {
	out := make([]PodRange, 0, len(in))
	for _, r := range in {
		c := PodRange{Prefix: r.Prefix.Masked(), Node: r.Node}
		for _, a := range r.Addrs {
			if a.Unmap().Is4() == c.Prefix.Addr().Is4() && !slices.Contains(c.Addrs, a.Unmap()) {
				c.Addrs = append(c.Addrs, a.Unmap())
			}
		}
		slices.SortFunc(c.Addrs, netip.Addr.Compare)
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool {
		if c := out[i].Prefix.Addr().Compare(out[j].Prefix.Addr()); c != 0 {
			return c < 0
		}
		return out[i].Prefix.Bits() < out[j].Prefix.Bits()
	})
	return out
}

// applyImports makes the server's import policy accept, inside the pod
// ranges, only each range itself with its owner's address as next hop,
// through whichever peer relays it; everything else is accepted as before
// (it is not installed anywhere). When the policy changes, every peer's
// received routes are judged again, keeping the sessions. Called with mu
// held.
func (s *Speaker) applyImports(ctx context.Context, in []PodRange) error {
	ranges := normalRanges(in)
	shape := importShape(ranges)
	if s.importGen > 0 && shape == s.importShape {
		return nil
	}
	s.importGen++
	gen := s.importGen
	name := func(kind string, i int) string { return fmt.Sprintf("berth-import-%d-%s-%d", gen, kind, i) }
	policy := &api.Policy{Name: fmt.Sprintf("berth-import-%d", gen)}
	var sets []*api.DefinedSet
	// A prefix set holds one family (GoBGP refuses a mixed one): the pod
	// ranges of a dual-stack cluster make two.
	all4 := &api.DefinedSet{DefinedType: api.DefinedType_DEFINED_TYPE_PREFIX, Name: name("pods", 4)}
	all6 := &api.DefinedSet{DefinedType: api.DefinedType_DEFINED_TYPE_PREFIX, Name: name("pods", 6)}
	for i, r := range ranges {
		own := prefixSet(name("range", i), []netip.Prefix{r.Prefix})
		sets = append(sets, own)
		all := all4
		if r.Prefix.Addr().Is6() {
			all = all6
		}
		all.Prefixes = append(all.Prefixes, &api.Prefix{IpPrefix: r.Prefix.String(),
			MaskLengthMin: uint32(r.Prefix.Bits()), MaskLengthMax: uint32(r.Prefix.Addr().BitLen())})
		if len(r.Addrs) == 0 {
			continue // no next hop is the owner's: refused below
		}
		var nhs []string
		for _, a := range r.Addrs {
			nhs = append(nhs, a.String())
		}
		policy.Statements = append(policy.Statements, &api.Statement{
			Name: name("owner", i),
			Conditions: &api.Conditions{
				PrefixSet:     &api.MatchSet{Type: api.MatchSet_TYPE_ANY, Name: own.Name},
				NextHopInList: nhs,
			},
			Actions: &api.Actions{RouteAction: api.RouteAction_ROUTE_ACTION_ACCEPT},
		})
	}
	for fam, all := range []*api.DefinedSet{all4, all6} {
		if len(all.Prefixes) == 0 {
			continue
		}
		sets = append(sets, all)
		policy.Statements = append(policy.Statements, &api.Statement{
			Name:       name("foreign", fam),
			Conditions: &api.Conditions{PrefixSet: &api.MatchSet{Type: api.MatchSet_TYPE_ANY, Name: all.Name}},
			Actions:    &api.Actions{RouteAction: api.RouteAction_ROUTE_ACTION_REJECT},
		})
	}
	for _, ds := range sets {
		if err := s.srv.AddDefinedSet(ctx, &api.AddDefinedSetRequest{DefinedSet: ds}); err != nil {
			s.removeImportGeneration(ctx, gen) // what of it was added: a retry makes a new one
			return fmt.Errorf("import policy: set %s: %w", ds.Name, err)
		}
	}
	if len(policy.Statements) > 0 {
		if err := s.srv.AddPolicy(ctx, &api.AddPolicyRequest{Policy: policy}); err != nil {
			s.removeImportGeneration(ctx, gen)
			return fmt.Errorf("import policy: %w", err)
		}
	}
	assign := &api.PolicyAssignment{Name: "global", Direction: api.PolicyDirection_POLICY_DIRECTION_IMPORT,
		DefaultAction: api.RouteAction_ROUTE_ACTION_ACCEPT}
	if len(policy.Statements) > 0 {
		assign.Policies = []*api.Policy{{Name: policy.Name}}
	}
	if err := s.srv.SetPolicyAssignment(ctx, &api.SetPolicyAssignmentRequest{Assignment: assign}); err != nil {
		return fmt.Errorf("import policy: assign: %w", err)
	}
	s.removeImportGeneration(ctx, gen-1)
	s.importShape, s.podRanges = shape, newRangeIndex(ranges)
	// What the peers sent already is judged again (GoBGP keeps it in
	// its Adj-RIB-In: no route refresh, no session reset).
	for _, p := range s.peers {
		if err := s.srv.ResetPeer(ctx, &api.ResetPeerRequest{Address: p.Address.String(), Soft: true,
			Direction: api.ResetPeerRequest_DIRECTION_IN}); err != nil {
			s.log.Debug("soft reset in", "peer", p.Address, "error", err)
		}
	}
	return nil
}

// removeImportGeneration deletes an older import policy and its sets.
func (s *Speaker) removeImportGeneration(ctx context.Context, gen int) {
	if gen < 1 {
		return
	}
	_ = s.srv.DeletePolicy(ctx, &api.DeletePolicyRequest{Policy: &api.Policy{Name: fmt.Sprintf("berth-import-%d", gen)}})
	prefix := fmt.Sprintf("berth-import-%d-", gen)
	var names []string
	_ = s.srv.ListDefinedSet(ctx, &api.ListDefinedSetRequest{DefinedType: api.DefinedType_DEFINED_TYPE_PREFIX}, func(ds *api.DefinedSet) {
		if strings.HasPrefix(ds.Name, prefix) {
			names = append(names, ds.Name)
		}
	})
	for _, n := range names {
		_ = s.srv.DeleteDefinedSet(ctx, &api.DeleteDefinedSetRequest{DefinedSet: &api.DefinedSet{DefinedType: api.DefinedType_DEFINED_TYPE_PREFIX, Name: n}, All: true})
	}
}

// refused lists what the import policy refuses of one peer's routes now:
// the server's Adj-RIB-In (the routes as the peer sent them), classified.
func refused(srv *server.BgpServer, peer netip.Addr, ix *rangeIndex) []Refusal {
	if ix == nil || len(ix.exact) == 0 {
		return nil
	}
	fam := bgp.RF_IPv4_UC
	if peer.Is6() {
		fam = bgp.RF_IPv6_UC
	}
	var out []Refusal
	_ = srv.ListPath(apiutil.ListPathRequest{TableType: api.TableType_TABLE_TYPE_ADJ_IN, Name: peer.String(), Family: fam},
		func(_ bgp.NLRI, paths []*apiutil.Path) {
			for _, p := range paths {
				nlri, ok := p.Nlri.(*bgp.IPAddrPrefix)
				if !ok || p.Withdrawal {
					continue
				}
				if r, ok := classify(ix, nlri.Prefix, nextHop(p.Attrs)); ok {
					out = append(out, r)
				}
			}
		})
	sort.Slice(out, func(i, j int) bool {
		if c := out[i].Prefix.Addr().Compare(out[j].Prefix.Addr()); c != 0 {
			return c < 0
		}
		return out[i].Prefix.Bits() < out[j].Prefix.Bits()
	})
	return out
}
