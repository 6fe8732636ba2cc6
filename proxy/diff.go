package proxy

import (
	"sort"
	"strings"
	"time"

	"k8s.io/utils/ptr"
	"sigs.k8s.io/knftables"
)

// Sync adds to tx what turns the table from prev into next. With a nil prev
// it builds the whole table (start-up, or after a failed apply: the old
// table is deleted in the same transaction, so nothing stale survives). Otherwise it touches only
// what differs: a changed chain is flushed and refilled, map elements are
// added and deleted one by one, and chains that are gone are deleted after
// the map elements that pointed at them.
func Sync(tx *knftables.Transaction, prev *Ruleset, next Ruleset) {
	if prev == nil {
		// Start from nothing, atomically: add the table (a no-op if it
		// exists), delete it with all its chains, maps and sets, and
		// build it again, all in this one transaction. Established flows
		// keep their NAT in conntrack meanwhile.
		tx.Add(&knftables.Table{})
		tx.Delete(&knftables.Table{})
		tx.Add(&knftables.Table{Comment: ptr.To("berth service proxy")})
		for _, b := range baseChains() {
			tx.Add(&knftables.Chain{Name: b.Name, Type: ptr.To(knftables.BaseChainType(b.Type)), Hook: ptr.To(knftables.BaseChainHook(b.Hook)), Priority: ptr.To(knftables.BaseChainPriority(b.Priority))})
		}
		empty := Ruleset{Chains: map[string][]string{}, Maps: map[string]Map{}, Sets: map[string]Set{}}
		prev = &empty
		defer func() {
			// Base chains refer to the services chain and the maps, so
			// their rules go in after those exist.
			for _, b := range baseChains() {
				for _, r := range b.Rules {
					tx.Add(&knftables.Rule{Chain: b.Name, Rule: r})
				}
			}
		}()
	}
	for _, name := range sortedKeys(next.Sets) {
		s := next.Sets[name]
		old, had := prev.Sets[name]
		if s.TimeoutSeconds > 0 {
			// A dynamic set: the kernel owns its elements.
			if !had || old.TimeoutSeconds != s.TimeoutSeconds {
				if had {
					tx.Delete(&knftables.Set{Name: name})
				}
				timeout := time.Duration(s.TimeoutSeconds) * time.Second
				tx.Add(&knftables.Set{Name: name, Type: s.Type, Flags: []knftables.SetFlag{knftables.DynamicFlag, knftables.TimeoutFlag}, Timeout: &timeout})
			}
			continue
		}
		if !had {
			tx.Add(&knftables.Set{Name: name, Type: s.Type, Flags: []knftables.SetFlag{knftables.IntervalFlag}})
		}
		if had && strings.Join(old.Elements, ",") == strings.Join(s.Elements, ",") {
			continue
		}
		if had {
			tx.Flush(&knftables.Set{Name: name})
		}
		for _, e := range s.Elements {
			tx.Add(&knftables.Element{Set: name, Key: []string{e}})
		}
	}
	// Maps exist before the rules that look them up.
	for _, name := range sortedKeys(next.Maps) {
		if _, had := prev.Maps[name]; !had {
			tx.Add(&knftables.Map{Name: name, Type: next.Maps[name].Type})
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
			tx.Flush(&knftables.Chain{Name: name})
		} else {
			tx.Add(&knftables.Chain{Name: name})
		}
	}
	for _, name := range changed {
		for _, r := range next.Chains[name] {
			tx.Add(&knftables.Rule{Chain: name, Rule: r})
		}
	}
	for _, name := range sortedKeys(next.Maps) {
		m := next.Maps[name]
		old := prev.Maps[name]
		for _, k := range sortedKeys(old.Elements) {
			if v, ok := m.Elements[k]; !ok || v != old.Elements[k] {
				tx.Delete(&knftables.Element{Map: name, Key: splitKey(k)})
			}
		}
		for _, k := range sortedKeys(m.Elements) {
			if v, ok := old.Elements[k]; !ok || v != m.Elements[k] {
				tx.Add(&knftables.Element{Map: name, Key: splitKey(k), Value: []string{m.Elements[k]}})
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
	rank := func(n string) int {
		switch {
		case strings.HasPrefix(n, "ext-"):
			return 0
		case strings.HasPrefix(n, "svc-"):
			return 1
		}
		return 2
	}
	sort.SliceStable(gone, func(i, j int) bool { return rank(gone[i]) < rank(gone[j]) })
	for _, name := range gone {
		tx.Delete(&knftables.Chain{Name: name})
	}
	for _, name := range sortedKeys(prev.Sets) {
		if _, ok := next.Sets[name]; !ok {
			tx.Delete(&knftables.Set{Name: name})
		}
	}
}

func splitKey(k string) []string { return strings.Split(k, " . ") }

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
