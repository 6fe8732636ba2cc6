package nftrules

import (
	"maps"
	"slices"
	"strings"
)

// Sync adds to tx what turns the table from prev into next. With a nil prev
// (start-up, or after a failed apply) it builds the whole table: the old
// one, if any, is deleted in the same transaction, so nothing stale
// survives and no packet sees a half-built table. Otherwise it touches
// only what differs: elements are added and deleted one by one (an
// interval set that changed is flushed and refilled), a changed chain is
// flushed and refilled, new objects go in before what refers to them and
// gone ones go after.
func Sync(tx *Tx, prev *Ruleset, next Ruleset) {
	if prev != nil && !sameBase(prev.Base, next.Base) {
		prev = nil
	}
	if prev == nil {
		// Add the table (a no-op if it exists), delete it with all it
		// holds, and build it again, in this one transaction. Established
		// flows keep their NAT in conntrack meanwhile.
		tx.AddTable()
		tx.DeleteTable()
		tx.AddTable()
		for i := range next.Base {
			b := next.Base[i]
			b.Rules = nil
			tx.AddChain(b.Name, &b)
		}
		empty := Empty()
		empty.Base = next.Base
		for _, b := range next.Base {
			empty.Chains[b.Name] = nil
		}
		prev = &empty
	} else {
		prev = withBase(*prev)
	}
	// Base chains sit in Chains for the diff below.
	next = *withBase(next)
	for _, c := range next.Counters {
		if !slices.Contains(prev.Counters, c) {
			tx.AddCounter(c)
		}
	}
	// Sets and maps whose definition changed are deleted and added again,
	// after the chains that refer to them are flushed.
	recreate := map[string]bool{}
	setNames, mapNames := sortedKeys(next.Sets), sortedKeys(next.Maps)
	for _, name := range setNames {
		if old, had := prev.Sets[name]; had && old.def() != next.Sets[name].def() {
			recreate[name] = true
		} else if !had {
			tx.AddSet(name, next.Sets[name].def())
		}
	}
	for _, name := range mapNames {
		if old, had := prev.Maps[name]; had && old.Type != next.Maps[name].Type {
			recreate[name] = true
		} else if !had {
			tx.AddSet(name, SetDef{Type: next.Maps[name].Type})
		}
	}
	// Chains: the changed ones (and those that refer to a recreated set)
	// are flushed, new ones added, gone ones flushed.
	var fill []string
	for _, name := range sortedKeys(next.Chains) {
		rules := next.Chains[name]
		old, had := prev.Chains[name]
		if had && slices.Equal(old, rules) && !refersTo(old, recreate) {
			continue
		}
		fill = append(fill, name)
		if !had {
			tx.AddChain(name, nil)
		} else if len(old) > 0 {
			tx.FlushChain(name)
		}
	}
	var gone []string
	for _, name := range sortedKeys(prev.Chains) {
		if _, ok := next.Chains[name]; !ok {
			gone = append(gone, name)
			tx.FlushChain(name)
		}
	}
	for _, name := range sortedKeys(recreate) {
		tx.DeleteSet(name)
		if s, ok := next.Sets[name]; ok {
			tx.AddSet(name, s.def())
		} else {
			tx.AddSet(name, SetDef{Type: next.Maps[name].Type})
		}
	}
	for _, name := range setNames {
		s := next.Sets[name]
		if s.TimeoutSeconds > 0 {
			continue // the kernel owns a dynamic set's elements
		}
		var old []string
		if !recreate[name] {
			old = prev.Sets[name].Elements
		}
		if slices.Equal(old, s.Elements) {
			continue
		}
		if s.Interval {
			// Intervals go in whole: flush and refill.
			if len(old) > 0 {
				tx.FlushSet(name)
			}
			for _, e := range s.Elements {
				tx.AddElement(name, e, "")
			}
			continue
		}
		in := make(map[string]bool, len(s.Elements))
		for _, e := range s.Elements {
			in[e] = true
		}
		was := make(map[string]bool, len(old))
		for _, e := range old {
			was[e] = true
			if !in[e] {
				tx.DeleteElement(name, e)
			}
		}
		for _, e := range s.Elements {
			if !was[e] {
				tx.AddElement(name, e, "")
			}
		}
	}
	// Rules of chains that jump to others go in after those are filled.
	for _, name := range TargetsFirst(fill, next.Chains) {
		for _, r := range next.Chains[name] {
			tx.AddRule(name, r)
		}
	}
	for _, name := range mapNames {
		m := next.Maps[name]
		var old map[string]string
		if !recreate[name] {
			old = prev.Maps[name].Elements
		}
		if maps.Equal(old, m.Elements) {
			continue
		}
		for _, k := range sortedKeys(old) {
			if v, ok := m.Elements[k]; !ok || v != old[k] {
				tx.DeleteElement(name, k)
			}
		}
		for _, k := range sortedKeys(m.Elements) {
			if v, ok := old[k]; !ok || v != m.Elements[k] {
				tx.AddElement(name, k, m.Elements[k])
			}
		}
	}
	for _, name := range slices.Backward(TargetsFirst(gone, prev.Chains)) {
		tx.DeleteChain(name)
	}
	for _, name := range sortedKeys(prev.Sets) {
		if _, ok := next.Sets[name]; !ok {
			tx.DeleteSet(name)
		}
	}
	for _, name := range sortedKeys(prev.Maps) {
		if _, ok := next.Maps[name]; !ok {
			tx.DeleteSet(name)
		}
	}
	for _, c := range prev.Counters {
		if !slices.Contains(next.Counters, c) {
			tx.DeleteCounter(c)
		}
	}
}

// withBase returns rs with its base chains' rules in Chains.
func withBase(rs Ruleset) *Ruleset {
	if len(rs.Base) == 0 {
		return &rs
	}
	chains := make(map[string][]string, len(rs.Chains)+len(rs.Base))
	for k, v := range rs.Chains {
		chains[k] = v
	}
	for _, b := range rs.Base {
		chains[b.Name] = b.Rules
	}
	rs.Chains = chains
	return &rs
}

// refersTo reports whether a rule looks up one of the sets.
func refersTo(rules []string, sets map[string]bool) bool {
	if len(sets) == 0 {
		return false
	}
	for _, r := range rules {
		_, ss, _ := Refs(r)
		for _, s := range ss {
			if sets[s] {
				return true
			}
		}
	}
	return false
}

// TargetsFirst orders chains so that each comes after the chains (of
// names) it jumps or goes to, in the order of names otherwise: the
// order to fill them in, so that no rule jumps to a chain not yet filled.
// Its reverse is the order to delete them in.
func TargetsFirst(names []string, chains map[string][]string) []string {
	in := make(map[string]bool, len(names))
	for _, n := range names {
		in[n] = true
	}
	done := make(map[string]bool, len(names))
	out := make([]string, 0, len(names))
	var visit func(n string)
	visit = func(n string) {
		if done[n] {
			return
		}
		done[n] = true
		for _, r := range chains[n] {
			if !strings.Contains(r, "jump ") && !strings.Contains(r, "goto ") {
				continue
			}
			cs, _, _ := Refs(r)
			for _, c := range cs {
				if in[c] {
					visit(c)
				}
			}
		}
		out = append(out, n)
	}
	for _, n := range names {
		visit(n)
	}
	return out
}
