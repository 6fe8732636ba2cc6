package proxy

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"

	"github.com/berthnet/berth/internal/nftrules"
)

// change is one Service port whose part differs from what was applied: old
// is nil for a new one, next is nil for one that is gone; o and n are the
// parts, as applied and as they will be.
type change struct {
	key       PortKey
	old, next *appliedPort
	o, n      fragment
}

// incremental applies, in one transaction, the Service ports svcs (new or
// changed; with st's endpoints and fixed sets) and the removal of those in
// gone. Unchanged ports in svcs cost one comparison each.
func (s *Syncer) incremental(ctx context.Context, st State, svcs []ServicePort, gone []PortKey) error {
	var changes []change
	// The applied parts are built again from what they were built from,
	// before any range moves (the syncer keeps inputs, not parts: less
	// memory). Ranges of Service ports that went are then free for those
	// that come.
	removed := make(map[PortKey]bool, len(gone))
	for _, k := range gone {
		if old := s.frags[k]; old != nil && !removed[k] {
			removed[k] = true
			changes = append(changes, change{key: k, old: old, o: buildFragment(old.sp, old.eps, s.blocks)})
		}
	}
	nGone := len(changes)
	done := make(map[PortKey]bool, len(svcs))
	for _, sp := range svcs {
		if done[sp.Key] || removed[sp.Key] {
			continue
		}
		done[sp.Key] = true
		eps := st.Endpoints[sp.Key]
		old := s.frags[sp.Key]
		if old != nil && sameInput(old, sp, eps) {
			continue
		}
		c := change{key: sp.Key, old: old, next: &appliedPort{sp: sp, eps: eps}}
		if old != nil {
			c.o = buildFragment(old.sp, old.eps, s.blocks)
		}
		changes = append(changes, c)
	}
	for _, c := range changes[:nGone] {
		for _, b := range c.o.blocks {
			s.blocks.release(b)
		}
	}
	for i := nGone; i < len(changes); i++ {
		c := &changes[i]
		c.n = buildFragment(c.next.sp, c.next.eps, s.blocks)
		c.next.count(c.n)
		for _, b := range c.o.blocks {
			if !slices.Contains(c.n.blocks, b) {
				s.blocks.release(b)
			}
		}
	}
	fixed := Build(State{ClusterCIDRs: st.ClusterCIDRs, NodePortCIDRs: st.NodePortCIDRs})
	tx := nftrules.NewTx(Table)
	nftrules.Sync(tx, &s.fixed, fixed)
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
	for a, n := range refs {
		if n <= 0 {
			delete(s.refs, a)
		} else {
			s.refs[a] = n
		}
	}
	olds, nexts := make([]*appliedPort, 0, len(changes)), make([]*appliedPort, 0, len(changes))
	for _, c := range changes {
		olds, nexts = append(olds, c.old), append(nexts, c.next)
		if c.next == nil {
			delete(s.frags, c.key)
		} else {
			s.frags[c.key] = c.next
		}
	}
	s.countUDP(olds, nexts)
	return nil
}

// diff adds to tx what turns the changed Service ports' parts from old to
// next, in the order the kernel needs: chains that change or go are
// flushed first (nothing then refers to their sets), sets are replaced,
// new chains are added and filled, map elements and set members follow
// their owners, and the chains that went are deleted last. It returns the
// claims and references that change, as they will be once tx is applied
// (empty: gone); s is not changed.
func (s *Syncer) diff(tx *nftrules.Tx, changes []change) (map[string][]PortKey, map[netip.Addr]int) {
	var gone []string
	for _, c := range changes {
		for _, name := range sortedKeys(c.o.chains) {
			rules, keep := c.n.chains[name]
			if !keep {
				gone = append(gone, name)
				tx.FlushChain(name)
			} else if !slices.Equal(rules, c.o.chains[name]) {
				tx.FlushChain(name)
			}
		}
	}
	for _, c := range changes {
		o, n := c.o, c.n
		for _, name := range sortedKeys(o.sets) {
			if set, keep := n.sets[name]; !keep || set.TimeoutSeconds != o.sets[name].TimeoutSeconds || set.Type != o.sets[name].Type {
				tx.DeleteSet(name)
			}
		}
		for _, name := range sortedKeys(n.sets) {
			set := n.sets[name]
			if old, had := o.sets[name]; !had || old.TimeoutSeconds != set.TimeoutSeconds || old.Type != set.Type {
				tx.AddSet(name, nftrules.SetDef{Type: set.Type, TimeoutSeconds: set.TimeoutSeconds})
			}
		}
	}
	var fill []string
	rulesOf := map[string][]string{}
	for _, c := range changes {
		for _, name := range sortedKeys(c.n.chains) {
			old, had := c.o.chains[name]
			if !had {
				tx.AddChain(name, nil)
			}
			if !had || !slices.Equal(old, c.n.chains[name]) {
				fill = append(fill, name)
				rulesOf[name] = c.n.chains[name]
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
		for _, e := range c.o.elems {
			touched[e.set+" "+e.key] = true
		}
		for _, e := range c.n.elems {
			touched[e.set+" "+e.key] = true
		}
	}
	for k := range touched {
		claims[k] = slices.Clone(s.claims[k])
	}
	value := func(owner PortKey, k string, next bool) string {
		var f *fragment
		for i := range changes {
			if changes[i].key == owner {
				f = &changes[i].o
				if next {
					f = &changes[i].n
				}
			}
		}
		if f == nil {
			// An owner that did not change: its part is what it was.
			a := s.frags[owner]
			if a == nil {
				return ""
			}
			b := buildFragment(a.sp, a.eps, s.blocks)
			f = &b
		}
		for _, e := range f.elems {
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
		for _, e := range c.o.elems {
			k := e.set + " " + e.key
			claims[k] = slices.DeleteFunc(claims[k], func(p PortKey) bool { return p == c.key })
		}
		for _, e := range c.n.elems {
			k := e.set + " " + e.key
			claims[k] = append(claims[k], c.key)
		}
	}
	type kv struct{ k, v string }
	var dels []string
	var adds []kv
	for k := range touched {
		var a string
		has := len(claims[k]) > 0
		if has {
			a = value(claims[k][0], k, true)
		}
		b, had := before[k]
		if had && (!has || a != b) {
			dels = append(dels, k)
		}
		if has && (!had || a != b) {
			adds = append(adds, kv{k, a})
		}
	}
	// Endpoint-map elements sit at keys of their port's own ranges.
	for _, c := range changes {
		newer := make(map[string]string, len(c.n.own))
		for _, e := range c.n.own {
			newer[e.set+" "+e.key] = e.value
		}
		older := make(map[string]string, len(c.o.own))
		for _, e := range c.o.own {
			k := e.set + " " + e.key
			older[k] = e.value
			if v, ok := newer[k]; !ok || v != e.value {
				dels = append(dels, k)
			}
		}
		for _, e := range c.n.own {
			k := e.set + " " + e.key
			if v, ok := older[k]; !ok || v != e.value {
				adds = append(adds, kv{k, e.value})
			}
		}
	}
	sort.Strings(dels)
	sort.Slice(adds, func(i, j int) bool { return adds[i].k < adds[j].k })
	for _, k := range dels {
		set, key, _ := strings.Cut(k, " ")
		tx.DeleteElement(set, key)
	}
	for _, a := range adds {
		set, key, _ := strings.Cut(a.k, " ")
		tx.AddElement(set, key, a.v)
	}

	// Hairpin pairs, counted by endpoint.
	delta := map[netip.Addr]int{}
	for _, c := range changes {
		for _, a := range c.o.members {
			delta[a]--
		}
		for _, a := range c.n.members {
			delta[a]++
		}
	}
	addrs := make([]netip.Addr, 0, len(delta))
	for a := range delta {
		addrs = append(addrs, a)
	}
	slices.SortFunc(addrs, netip.Addr.Compare)
	refs := map[netip.Addr]int{}
	for _, a := range addrs {
		was := s.refs[a]
		now := was + delta[a]
		e := hairpinMember(a)
		switch {
		case was > 0 && now <= 0:
			tx.DeleteElement(e.set, e.key)
		case was <= 0 && now > 0:
			tx.AddElement(e.set, e.key, "")
		}
		refs[a] = now
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
