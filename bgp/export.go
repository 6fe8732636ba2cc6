// The export policy: which prefixes go to which peer with which
// attributes, as GoBGP defined sets and one policy, changed in place.

package bgp

import (
	"context"
	"fmt"
	"net/netip"
	"sort"
	"strings"

	"github.com/osrg/gobgp/v4/api"
)

// statement is one part of the export policy: prefixes to one peer with
// one set of attributes.
type statement struct {
	peer     *Peer
	prefixes []netip.Prefix
	attrs    Attrs
}

func exportStatements(plan Plan) []statement {
	var out []statement
	peers := append([]*Peer(nil), plan.Peers...)
	sort.Slice(peers, func(i, j int) bool { return peers[i].Name < peers[j].Name })
	for _, p := range peers {
		groups := map[string]*statement{}
		var keys []string
		for _, e := range plan.Exports[p.Name] {
			k := e.Attrs.key()
			g := groups[k]
			if g == nil {
				g = &statement{peer: p, attrs: e.Attrs}
				groups[k] = g
				keys = append(keys, k)
			}
			g.prefixes = append(g.prefixes, e.Prefix)
		}
		sort.Strings(keys)
		for _, k := range keys {
			out = append(out, *groups[k])
		}
	}
	return out
}

// policyShape is the export policy without its prefixes: when it stays,
// only the prefix sets change.
func policyShape(sts []statement) string {
	var b strings.Builder
	for _, st := range sts {
		fmt.Fprintln(&b, st.peer.Address, st.attrs.key())
	}
	return b.String()
}

func (s *Speaker) setName(gen, i int) string { return fmt.Sprintf("berth-%d-prefixes-%d", gen, i) }

func prefixSet(name string, pfs []netip.Prefix) *api.DefinedSet {
	ds := &api.DefinedSet{DefinedType: api.DefinedType_DEFINED_TYPE_PREFIX, Name: name}
	for _, pf := range pfs {
		ds.Prefixes = append(ds.Prefixes, &api.Prefix{IpPrefix: pf.String(), MaskLengthMin: uint32(pf.Bits()), MaskLengthMax: uint32(pf.Bits())})
	}
	return ds
}

// growSets adds the plan's new prefixes to the sets in place.
func (s *Speaker) growSets(ctx context.Context, sts []statement) error {
	for i, st := range sts {
		var add []netip.Prefix
		for _, pf := range st.prefixes {
			if !s.sets[i][pf] {
				add = append(add, pf)
			}
		}
		if len(add) == 0 {
			continue
		}
		if err := s.srv.AddDefinedSet(ctx, &api.AddDefinedSetRequest{DefinedSet: prefixSet(s.setName(s.gen, i), add)}); err != nil {
			return fmt.Errorf("export policy: add to set: %w", err)
		}
		for _, pf := range add {
			s.sets[i][pf] = true
		}
	}
	return nil
}

// shrinkSets takes out of the sets what the plan no longer sends, and
// returns the peers that still have one of those prefixes advertised to
// other peers, whose export must be judged again.
func (s *Speaker) shrinkSets(ctx context.Context, sts []statement, advertised map[netip.Prefix]bool) (map[netip.Addr]bool, error) {
	reset := map[netip.Addr]bool{}
	for i, st := range sts {
		want := map[netip.Prefix]bool{}
		for _, pf := range st.prefixes {
			want[pf] = true
		}
		var del []netip.Prefix
		for pf := range s.sets[i] {
			if !want[pf] {
				del = append(del, pf)
			}
		}
		if len(del) == 0 {
			continue
		}
		if err := s.srv.DeleteDefinedSet(ctx, &api.DeleteDefinedSetRequest{DefinedSet: prefixSet(s.setName(s.gen, i), del)}); err != nil {
			return nil, fmt.Errorf("export policy: remove from set: %w", err)
		}
		for _, pf := range del {
			delete(s.sets[i], pf)
			if advertised[pf] {
				reset[st.peer.Address] = true
			}
		}
	}
	return reset, nil
}

// replacePolicy installs a new generation of the export policy (sets,
// statements, policy), assigns it at once, and removes the old one.
func (s *Speaker) replacePolicy(ctx context.Context, sts []statement) error {
	s.gen++
	gen := s.gen
	name := func(kind string, i int) string { return fmt.Sprintf("berth-%d-%s-%d", gen, kind, i) }
	policy := &api.Policy{Name: fmt.Sprintf("berth-export-%d", gen)}
	var sets []*api.DefinedSet
	s.sets = make([]map[netip.Prefix]bool, len(sts))
	for i, st := range sts {
		ps := prefixSet(s.setName(gen, i), st.prefixes)
		s.sets[i] = map[netip.Prefix]bool{}
		for _, pf := range st.prefixes {
			s.sets[i][pf] = true
		}
		bits := 32
		if st.peer.Address.Is6() {
			bits = 128
		}
		ns := &api.DefinedSet{DefinedType: api.DefinedType_DEFINED_TYPE_NEIGHBOR, Name: name("peer", i),
			List: []string{netip.PrefixFrom(st.peer.Address, bits).String()}}
		sets = append(sets, ps, ns)
		actions := &api.Actions{RouteAction: api.RouteAction_ROUTE_ACTION_ACCEPT}
		if len(st.attrs.Communities) > 0 {
			var cs []string
			for _, c := range st.attrs.Communities {
				cs = append(cs, fmt.Sprintf("%d:%d", c>>16, c&0xffff))
			}
			actions.Community = &api.CommunityAction{Type: api.CommunityAction_TYPE_ADD, Communities: cs}
		}
		if len(st.attrs.LargeCommunities) > 0 {
			var cs []string
			for _, c := range st.attrs.LargeCommunities {
				cs = append(cs, fmt.Sprintf("%d:%d:%d", c[0], c[1], c[2]))
			}
			actions.LargeCommunity = &api.CommunityAction{Type: api.CommunityAction_TYPE_ADD, Communities: cs}
		}
		if st.attrs.LocalPref != nil {
			actions.LocalPref = &api.LocalPrefAction{Value: *st.attrs.LocalPref}
		}
		policy.Statements = append(policy.Statements, &api.Statement{
			Name: name("statement", i),
			Conditions: &api.Conditions{
				PrefixSet:   &api.MatchSet{Type: api.MatchSet_TYPE_ANY, Name: ps.Name},
				NeighborSet: &api.MatchSet{Type: api.MatchSet_TYPE_ANY, Name: ns.Name},
			},
			Actions: actions,
		})
	}
	for _, ds := range sets {
		if err := s.srv.AddDefinedSet(ctx, &api.AddDefinedSetRequest{DefinedSet: ds}); err != nil {
			return fmt.Errorf("export policy: set %s: %w", ds.Name, err)
		}
	}
	if len(policy.Statements) > 0 {
		if err := s.srv.AddPolicy(ctx, &api.AddPolicyRequest{Policy: policy}); err != nil {
			return fmt.Errorf("export policy: %w", err)
		}
	}
	assign := &api.PolicyAssignment{Name: "global", Direction: api.PolicyDirection_POLICY_DIRECTION_EXPORT,
		DefaultAction: api.RouteAction_ROUTE_ACTION_REJECT}
	if len(policy.Statements) > 0 {
		assign.Policies = []*api.Policy{{Name: policy.Name}}
	}
	if err := s.srv.SetPolicyAssignment(ctx, &api.SetPolicyAssignmentRequest{Assignment: assign}); err != nil {
		return fmt.Errorf("export policy: assign: %w", err)
	}
	s.removeGeneration(ctx, gen-1)
	s.shape = policyShape(sts)
	return nil
}

// removeGeneration deletes an older generation's policy and sets.
func (s *Speaker) removeGeneration(ctx context.Context, gen int) {
	if gen < 1 {
		return
	}
	prefix := fmt.Sprintf("berth-%d-", gen)
	_ = s.srv.DeletePolicy(ctx, &api.DeletePolicyRequest{Policy: &api.Policy{Name: fmt.Sprintf("berth-export-%d", gen)}})
	for _, t := range []api.DefinedType{api.DefinedType_DEFINED_TYPE_PREFIX, api.DefinedType_DEFINED_TYPE_NEIGHBOR} {
		var names []string
		_ = s.srv.ListDefinedSet(ctx, &api.ListDefinedSetRequest{DefinedType: t}, func(ds *api.DefinedSet) {
			if strings.HasPrefix(ds.Name, prefix) {
				names = append(names, ds.Name)
			}
		})
		for _, n := range names {
			_ = s.srv.DeleteDefinedSet(ctx, &api.DeleteDefinedSetRequest{DefinedSet: &api.DefinedSet{DefinedType: t, Name: n}, All: true})
		}
	}
}
