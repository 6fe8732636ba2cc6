package proxy

import (
	"sort"
	"strings"
)

// Sync adds to tx what turns the table from prev into next. With a nil prev
// it builds the whole table (start-up, or after a failed apply: the old
// table is deleted in the same transaction, so nothing stale survives). Otherwise it touches only
// what differs: a changed chain is flushed and refilled, map elements are
// added and deleted one by one, and chains that are gone are deleted after
// the map elements that pointed at them.
func Sync(tx *Tx, prev *Ruleset, next Ruleset) {
	if prev == nil {
		// Start from nothing, atomically: add the table (a no-op if it
		// exists), delete it with all its chains, maps and sets, and
		// build it again, all in this one transaction. Established flows
		// keep their NAT in conntrack meanwhile.
		tx.AddTable()
		tx.DeleteTable()
		tx.AddTable()
		for _, b := range baseChains() {
			tx.AddChain(b.Name, &b)
		}
		empty := Ruleset{Chains: map[string][]string{}, Maps: map[string]Map{}, Sets: map[string]Set{}}
		prev = &empty
		defer func() {
			// Base chains refer to the services chain and the maps, so
			// their rules go in after those exist.
			for _, b := range baseChains() {
				for _, r := range b.Rules {
					tx.AddRule(b.Name, r)
				}
			}
		}()
	}
	for _, name := range sortedKeys(next.Sets) {
		s := next.Sets[name]
		old, had := prev.Sets[name]
		def := SetDef{Type: s.Type, Interval: s.Interval, TimeoutSeconds: s.TimeoutSeconds}
		if had && (old.TimeoutSeconds != s.TimeoutSeconds || old.Type != s.Type || old.Interval != s.Interval) {
			// Only a dynamic set's timeout can change; recreate it.
			tx.DeleteSet(name)
			had = false
		}
		if !had {
			tx.AddSet(name, def)
		}
		if s.TimeoutSeconds > 0 {
			// A dynamic set: the kernel owns its elements.
			continue
		}
		if had && strings.Join(old.Elements, ",") == strings.Join(s.Elements, ",") {
			continue
		}
		if s.Interval {
			// Intervals go in whole: flush and refill.
			if had {
				tx.FlushSet(name)
			}
			for _, e := range s.Elements {
				tx.AddElement(name, e, "")
			}
			continue
		}
		in := map[string]bool{}
		for _, e := range s.Elements {
			in[e] = true
		}
		was := map[string]bool{}
		for _, e := range old.Elements {
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
	// Maps exist before the rules that look them up.
	for _, name := range sortedKeys(next.Maps) {
		if _, had := prev.Maps[name]; !had {
			tx.AddSet(name, SetDef{Type: next.Maps[name].Type})
		}
	}
	// New and changed chains next, so map elements can point at them; all
	// new chains exist before any rule jumps to one.
	var changed []string
	for _, name := range sortedKeys(next.Chains) {
		old, had := prev.Chains[name]
		if had && strings.Join(old, "\n") == strings.Join(next.Chains[name], "\n") {
			continue
		}
		changed = append(changed, name)
		if had {
			tx.FlushChain(name)
		} else {
			tx.AddChain(name, nil)
		}
	}
	// Rules of chains that jump to others go after those are filled.
	sort.SliceStable(changed, func(i, j int) bool { return chainRank(changed[i]) > chainRank(changed[j]) })
	for _, name := range changed {
		for _, r := range next.Chains[name] {
			tx.AddRule(name, r)
		}
	}
	for _, name := range sortedKeys(next.Maps) {
		m := next.Maps[name]
		old := prev.Maps[name]
		for _, k := range sortedKeys(old.Elements) {
			if v, ok := m.Elements[k]; !ok || v != old.Elements[k] {
				tx.DeleteElement(name, k)
			}
		}
		for _, k := range sortedKeys(m.Elements) {
			if v, ok := old.Elements[k]; !ok || v != m.Elements[k] {
				tx.AddElement(name, k, m.Elements[k])
			}
		}
	}
	// Chains go after those that jump to them: ext before svc before ep.
	var gone []string
	for _, name := range sortedKeys(prev.Chains) {
		if _, ok := next.Chains[name]; !ok {
			gone = append(gone, name)
		}
	}
	sort.SliceStable(gone, func(i, j int) bool { return chainRank(gone[i]) < chainRank(gone[j]) })
	for _, name := range gone {
		tx.FlushChain(name)
	}
	for _, name := range gone {
		tx.DeleteChain(name)
	}
	for _, name := range sortedKeys(prev.Sets) {
		if _, ok := next.Sets[name]; !ok {
			tx.DeleteSet(name)
		}
	}
}

// chainRank orders a Service's chains by who jumps to whom: ext jumps to
// svc, svc to ep.
func chainRank(n string) int {
	switch {
	case strings.HasPrefix(n, "ext-"):
		return 0
	case strings.HasPrefix(n, "svc-"):
		return 1
	case strings.HasPrefix(n, "ep-"):
		return 2
	}
	return 3
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
