package netpol

import (
	"maps"
	"slices"
	"strings"

	"sigs.k8s.io/knftables"
)

// Sync adds to tx what turns the table from prev into next. With a nil
// prev it builds the whole table: the old one (if any) is deleted in the
// same transaction, so nothing stale survives and no packet ever sees a
// half-built table. Otherwise it touches only what differs: set and map
// elements one by one, a changed chain flushed and refilled; new objects
// go in before what refers to them, gone ones after.
func Sync(tx *knftables.Transaction, prev *Ruleset, next Ruleset) {
	if prev == nil {
		tx.Add(&knftables.Table{})
		tx.Delete(&knftables.Table{})
		tx.Add(&knftables.Table{})
		empty := Ruleset{Chains: map[string][]Rule{}, Sets: map[string]Set{}, Maps: map[string]Map{}}
		prev = &empty
		defer func() {
			// The base chains refer to the fixed chains and sets.
			for _, b := range BaseChains() {
				tx.Add(&knftables.Chain{
					Name: b.Name, Type: new(knftables.FilterType), Hook: new(knftables.BaseChainHook(b.Hook)),
					Priority: new(knftables.FilterPriority),
				})
				for _, r := range b.Rules {
					tx.Add(&knftables.Rule{Chain: b.Name, Rule: r})
				}
			}
		}()
	}
	oldCounters := map[string]bool{}
	for _, c := range prev.Counters {
		oldCounters[c] = true
	}
	for _, c := range next.Counters {
		if !oldCounters[c] {
			tx.Add(&knftables.Counter{Name: c})
		}
	}
	for _, name := range slices.Sorted(maps.Keys(next.Sets)) {
		s := next.Sets[name]
		old, had := prev.Sets[name]
		if !had {
			def := &knftables.Set{Name: name, Type: s.Type}
			if s.Interval {
				def.Flags = []knftables.SetFlag{knftables.IntervalFlag}
			}
			tx.Add(def)
		}
		diffElements(tx, name, false, toMap(old.Elements), toMap(s.Elements))
	}
	for _, name := range slices.Sorted(maps.Keys(next.Maps)) {
		if _, had := prev.Maps[name]; !had {
			tx.Add(&knftables.Map{Name: name, Type: next.Maps[name].Type})
		}
	}
	// New and changed chains, before map elements point at them.
	for _, name := range slices.Sorted(maps.Keys(next.Chains)) {
		rules := next.Chains[name]
		old, had := prev.Chains[name]
		if had && slices.Equal(old, rules) {
			continue
		}
		if had {
			tx.Flush(&knftables.Chain{Name: name})
		} else {
			tx.Add(&knftables.Chain{Name: name})
		}
		for _, r := range rules {
			kr := &knftables.Rule{Chain: name, Rule: r.Text}
			if r.Comment != "" {
				kr.Comment = new(r.Comment)
			}
			tx.Add(kr)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(next.Maps)) {
		diffElements(tx, name, true, prev.Maps[name].Elements, next.Maps[name].Elements)
	}
	for _, name := range slices.Sorted(maps.Keys(prev.Chains)) {
		if _, ok := next.Chains[name]; !ok {
			tx.Delete(&knftables.Chain{Name: name})
		}
	}
	for _, name := range slices.Sorted(maps.Keys(prev.Sets)) {
		if _, ok := next.Sets[name]; !ok {
			tx.Delete(&knftables.Set{Name: name})
		}
	}
	for _, name := range slices.Sorted(maps.Keys(prev.Maps)) {
		if _, ok := next.Maps[name]; !ok {
			tx.Delete(&knftables.Map{Name: name})
		}
	}
	newCounters := map[string]bool{}
	for _, c := range next.Counters {
		newCounters[c] = true
	}
	for _, c := range prev.Counters {
		if !newCounters[c] {
			tx.Delete(&knftables.Counter{Name: c})
		}
	}
}

func toMap(elems []string) map[string]string {
	m := make(map[string]string, len(elems))
	for _, e := range elems {
		m[e] = ""
	}
	return m
}

// diffElements deletes the elements of a set or map that are gone or
// changed, then adds the new and changed ones.
func diffElements(tx *knftables.Transaction, name string, isMap bool, old, next map[string]string) {
	elem := func(k, v string) *knftables.Element {
		e := &knftables.Element{Key: strings.Split(k, " . ")}
		if isMap {
			e.Map = name
			if v != "" {
				e.Value = []string{v}
			}
		} else {
			e.Set = name
		}
		return e
	}
	for _, k := range slices.Sorted(maps.Keys(old)) {
		if v, ok := next[k]; !ok || v != old[k] {
			tx.Delete(elem(k, ""))
		}
	}
	for _, k := range slices.Sorted(maps.Keys(next)) {
		if v, ok := old[k]; !ok || v != next[k] {
			tx.Add(elem(k, next[k]))
		}
	}
}
