package gatewayapi

import (
	"sort"
	"strings"
)

// intersectHostnames returns the hostnames a route serves on a listener:
// the route's hostnames that the listener's hostname admits, each narrowed
// to the more specific of the two. An empty listener hostname admits any;
// a route without hostnames takes the listener's. The result is sorted and
// empty when nothing intersects; [""] means any host.
func intersectHostnames(listener string, route []string) []string {
	if len(route) == 0 {
		return []string{listener}
	}
	if listener == "" {
		return uniqueSorted(route)
	}
	var out []string
	for _, h := range route {
		if m, ok := intersectHostname(listener, h); ok {
			out = append(out, m)
		}
	}
	return uniqueSorted(out)
}

// intersectHostname is the more specific of two hostnames when one admits
// the other.
func intersectHostname(a, b string) (string, bool) {
	switch {
	case a == b:
		return a, true
	case admits(a, b):
		return b, true
	case admits(b, a):
		return a, true
	}
	return "", false
}

// admits reports whether wildcard pattern w ("*.example.com") covers h, an
// exact hostname or a narrower wildcard. The wildcard needs at least one
// label in front: "*.example.com" does not admit "example.com".
func admits(w, h string) bool {
	if !strings.HasPrefix(w, "*.") {
		return false
	}
	suffix := w[1:] // ".example.com"
	if strings.HasPrefix(h, "*.") {
		return strings.HasSuffix(h[1:], suffix) && len(h) > len(w)
	}
	return strings.HasSuffix(h, suffix) && len(h) > len(suffix)
}

func uniqueSorted(s []string) []string {
	if len(s) < 2 {
		return s
	}
	s = append([]string(nil), s...)
	sort.Strings(s)
	out := s[:1]
	for _, v := range s[1:] {
		if v != out[len(out)-1] {
			out = append(out, v)
		}
	}
	return out
}
