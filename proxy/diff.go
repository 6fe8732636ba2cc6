package proxy

import (
	"sort"
	"strings"
)

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
