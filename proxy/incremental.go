package proxy

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
)

// change is one Service port whose part differs from what was applied: old
// is nil for a new one, next is nil for one that is gone.
type change struct {
	key       PortKey
	old, next *appliedPort
}

// incremental applies the difference between what was applied and the
// Service ports svcs (with st's endpoints and fixed sets) in one
// transaction. Unchanged Service ports cost one comparison each.
func (s *Syncer) incremental(ctx context.Context, st State, svcs []ServicePort) error {
	var changes []change
	seen := make(map[PortKey]bool, len(svcs))
	for _, sp := range svcs {
		seen[sp.Key] = true
	}
	// Ranges of Service ports that went are free for those that come.
	for k, old := range s.frags {
		if !seen[k] {
			changes = append(changes, change{key: k, old: old})
			for _, b := range old.f.blocks {
				s.blocks.release(b)
			}
		}
	}
	done := make(map[PortKey]bool, len(svcs))
	for _, sp := range svcs {
		if done[sp.Key] {
			continue
		}
		done[sp.Key] = true
		eps := st.Endpoints[sp.Key]
		old := s.frags[sp.Key]
		if old != nil && sameInput(old, sp, eps) {
			continue
		}
		next := buildFragment(sp, eps, s.blocks)
		if old != nil {
			for _, b := range old.f.blocks {
				if !slices.Contains(next.blocks, b) {
					s.blocks.release(b)
				}
			}
		}
		changes = append(changes, change{key: sp.Key, old: old, next: &appliedPort{sp: sp, eps: eps, f: next}})
	}
	fixed := Build(State{ClusterCIDRs: st.ClusterCIDRs, NodePortCIDRs: st.NodePortCIDRs})
	tx := &Tx{}
	Sync(tx, &s.fixed, fixed)
	if len(changes) == 0 && tx.Len() == 0 {
		return nil
	}
	sort.Slice(changes, func(i, j int) bool { return changes[i].key.String() < changes[j].key.String() })
	claims, refs := s.diff(tx, changes)
	if err := s.be.Apply(ctx, tx); err != nil {
		return fmt.Errorf("apply %d nftables operations: %w", tx.Len(), err)
	}
	s.fixed = fixed
	for k, cl := range claims {
		if len(cl) == 0 {
			delete(s.claims, k)
		} else {
			s.claims[k] = cl
		}
	}
	for k, n := range refs {
		if n <= 0 {
			delete(s.refs, k)
		} else {
			s.refs[k] = n
		}
	}
	for _, c := range changes {
		if c.next == nil {
			delete(s.frags, c.key)
		} else {
			s.frags[c.key] = c.next
		}
	}
	return nil
}

// diff adds to tx what turns the changed Service ports' parts from old to
// next, in the order the kernel needs: chains that change or go are
// flushed first (nothing then refers to their sets), sets are replaced,
// new chains are added and filled, map elements and set members follow
// their owners, and the chains that went are deleted last. It returns the
// claims and references that change, as they will be once tx is applied
// (empty: gone); s is not changed.
func (s *Syncer) diff(tx *Tx, changes []change) (map[string][]PortKey, map[string]int) {
	oldF := func(c change) fragment {
		if c.old == nil {
			return fragment{}
		}
		return c.old.f
	}
	newF := func(c change) fragment {
		if c.next == nil {
			return fragment{}
		}
		return c.next.f
	}
	var gone []string
	for _, c := range changes {
		o, n := oldF(c), newF(c)
		for _, name := range sortedKeys(o.chains) {
			rules, keep := n.chains[name]
			if !keep {
				gone = append(gone, name)
				tx.FlushChain(name)
			} else if !slices.Equal(rules, o.chains[name]) {
				tx.FlushChain(name)
			}
		}
	}
	for _, c := range changes {
		o, n := oldF(c), newF(c)
		for _, name := range sortedKeys(o.sets) {
			if set, keep := n.sets[name]; !keep || set.TimeoutSeconds != o.sets[name].TimeoutSeconds || set.Type != o.sets[name].Type {
				tx.DeleteSet(name)
			}
		}
		for _, name := range sortedKeys(n.sets) {
			set := n.sets[name]
			if old, had := o.sets[name]; !had || old.TimeoutSeconds != set.TimeoutSeconds || old.Type != set.Type {
				tx.AddSet(name, SetDef{Type: set.Type, TimeoutSeconds: set.TimeoutSeconds})
			}
		}
	}
	var fill []string
	rulesOf := map[string][]string{}
	for _, c := range changes {
		o, n := oldF(c), newF(c)
		for _, name := range sortedKeys(n.chains) {
			old, had := o.chains[name]
			if !had {
				tx.AddChain(name, nil)
			}
			if !had || !slices.Equal(old, n.chains[name]) {
				fill = append(fill, name)
				rulesOf[name] = n.chains[name]
			}
		}
	}
	sort.SliceStable(fill, func(i, j int) bool { return chainRank(fill[i]) > chainRank(fill[j]) })
	for _, name := range fill {
		for _, r := range rulesOf[name] {
			tx.AddRule(name, r)
		}
	}

	// Shared map elements: each goes to its first claimant. A change
	// releases the old part's claims and makes the new part's; an element
	// whose owner or value ends up different is replaced.
	claims := map[string][]PortKey{}
	touched := map[string]bool{}
	for _, c := range changes {
		for _, e := range oldF(c).elems {
			touched[e.set+" "+e.key] = true
		}
		for _, e := range newF(c).elems {
			touched[e.set+" "+e.key] = true
		}
	}
	for k := range touched {
		claims[k] = slices.Clone(s.claims[k])
	}
	value := func(owner PortKey, k string, next bool) string {
		a := s.frags[owner]
		for _, c := range changes {
			if c.key == owner && next {
				a = c.next
			}
		}
		if a == nil {
			return ""
		}
		for _, e := range a.f.elems {
			if e.set+" "+e.key == k {
				return e.value
			}
		}
		return ""
	}
	before := map[string]string{}
	for k := range touched {
		if cl := claims[k]; len(cl) > 0 {
			before[k] = value(cl[0], k, false)
		}
	}
	for _, c := range changes {
		for _, e := range oldF(c).elems {
			k := e.set + " " + e.key
			claims[k] = slices.DeleteFunc(claims[k], func(p PortKey) bool { return p == c.key })
		}
		for _, e := range newF(c).elems {
			k := e.set + " " + e.key
			claims[k] = append(claims[k], c.key)
		}
	}
	var dels, adds []string
	after := map[string]string{}
	for k := range touched {
		if cl := claims[k]; len(cl) > 0 {
			after[k] = value(cl[0], k, true)
		}
		b, had := before[k]
		a, has := after[k]
		switch {
		case had && (!has || a != b):
			dels = append(dels, k)
			if has {
				adds = append(adds, k)
			}
		case !had && has:
			adds = append(adds, k)
		}
	}
	sort.Strings(dels)
	sort.Strings(adds)
	for _, k := range dels {
		set, key, _ := strings.Cut(k, " ")
		tx.DeleteElement(set, key)
	}
	for _, k := range adds {
		set, key, _ := strings.Cut(k, " ")
		tx.AddElement(set, key, after[k])
	}
	// Shared set members, counted.
	refs := map[string]int{}
	delta := map[string]int{}
	for _, c := range changes {
		for _, m := range oldF(c).members {
			delta[m.set+" "+m.key]--
		}
		for _, m := range newF(c).members {
			delta[m.set+" "+m.key]++
		}
	}
	for _, k := range sortedKeys(delta) {
		was := s.refs[k]
		now := was + delta[k]
		set, key, _ := strings.Cut(k, " ")
		switch {
		case was > 0 && now <= 0:
			tx.DeleteElement(set, key)
		case was <= 0 && now > 0:
			tx.AddElement(set, key, "")
		}
		refs[k] = now
	}

	sort.SliceStable(gone, func(i, j int) bool { return chainRank(gone[i]) < chainRank(gone[j]) })
	for _, name := range gone {
		tx.DeleteChain(name)
	}
	return claims, refs
}

// sameInput reports whether a Service port and its endpoints are what was
// applied.
func sameInput(a *appliedPort, sp ServicePort, eps []Endpoint) bool {
	o := a.sp
	return o.Key == sp.Key && o.Port == sp.Port && o.NodePort == sp.NodePort && o.ExternalLocal == sp.ExternalLocal &&
		o.InternalLocal == sp.InternalLocal && o.AffinitySeconds == sp.AffinitySeconds && o.HealthCheckNodePort == sp.HealthCheckNodePort &&
		slices.Equal(o.ClusterIPs, sp.ClusterIPs) && slices.Equal(o.ExternalIPs, sp.ExternalIPs) &&
		slices.Equal(o.LoadBalancerIPs, sp.LoadBalancerIPs) && slices.Equal(a.eps, eps)
}
