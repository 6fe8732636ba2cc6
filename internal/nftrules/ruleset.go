// Package nftrules is Berth's one nftables layer: a table's content as
// data (Ruleset), the difference between two of them as a transaction
// (Sync, Tx), and two backends that apply a transaction all or nothing:
// Netlink, which sends it to the kernel as one netlink batch, and Fake, a
// strict in-memory table for tests. Tracer follows virtual packets
// through a Fake's rules as the kernel would. The service proxy,
// NetworkPolicy and the pod network's masquerade table use it, each for a
// table of its own (family inet).
//
// Rules are written in nft syntax (a fixed vocabulary, see compile.go) and
// compiled to the expressions nft itself would send, so `nft list table`
// shows them back as written.
package nftrules

import (
	"maps"
	"slices"
	"strings"
)

// Ruleset is a table's content as data: base chains (hooks), regular
// chains with their rules, sets, maps and named counters.
type Ruleset struct {
	// Base are the chains attached to hooks. A change of their name, type,
	// hook or priority rebuilds the table; a change of their rules
	// refills them.
	Base   []BaseChain
	Chains map[string][]string
	Maps   map[string]Map
	Sets   map[string]Set
	// Counters are named counters, sorted.
	Counters []string
}

// BaseChain is a chain attached to a hook: Type "filter" or "nat", Hook
// "prerouting", "input", "forward", "output" or "postrouting", Priority a
// number or a standard name ("filter", "dstnat", "srcnat").
type BaseChain struct {
	Name, Type, Hook, Priority string
	Rules                      []string
}

// Map is a map: key -> value, a verdict ("goto X", "jump X", "return",
// "accept", "drop") or data ("10.0.0.1 . 80").
type Map struct {
	Type     string
	Elements map[string]string
}

// Set is a set: with Interval, of CIDRs ("10.0.0.0/24"), ranges
// ("10.0.1.1-10.0.1.9", "tcp . 80-90") and single values; with
// TimeoutSeconds, a dynamic set the kernel fills (its Elements are
// ignored).
type Set struct {
	Type           string
	Elements       []string
	Interval       bool
	TimeoutSeconds int
}

// Empty returns a ruleset with no objects, ready to be filled.
func Empty() Ruleset {
	return Ruleset{Chains: map[string][]string{}, Maps: map[string]Map{}, Sets: map[string]Set{}}
}

// def is the definition of a set, as a transaction adds it.
func (s Set) def() SetDef {
	return SetDef{Type: s.Type, Interval: s.Interval, TimeoutSeconds: s.TimeoutSeconds}
}

// Refs lists the chains a rule or verdict jumps or goes to, the sets and
// maps it looks up ("@name") and the counters it counts on.
func Refs(text string) (chains, sets, counters []string) {
	words := fields(text)
	for i, w := range words {
		switch {
		case strings.HasPrefix(w, "@"):
			sets = append(sets, strings.TrimSuffix(w[1:], ","))
		case i > 0 && (words[i-1] == "goto" || words[i-1] == "jump"):
			chains = append(chains, w)
		case i > 1 && words[i-2] == "counter" && words[i-1] == "name":
			counters = append(counters, unquote(w))
		}
	}
	return chains, sets, counters
}

// sameBase reports whether two lists of base chains are the same chains
// (rules aside).
func sameBase(a, b []BaseChain) bool {
	return slices.EqualFunc(a, b, func(x, y BaseChain) bool {
		return x.Name == y.Name && x.Type == y.Type && x.Hook == y.Hook && x.Priority == y.Priority
	})
}

func sortedKeys[V any](m map[string]V) []string {
	return slices.Sorted(maps.Keys(m))
}
