package gatewayapi

import "strings"

// hostClaims are the hostnames the routes of one kind (HTTPRoute or
// GRPCRoute) were attached to a listener for. The Gateway API lets a
// listener serve a hostname to routes of one of the two kinds only: when
// an HTTPRoute and a GRPCRoute on a listener have hostnames that
// intersect, exactly one is accepted, the older (then the first by
// "<namespace>/<name>"). Routes attach oldest first, so a route whose
// hostnames intersect the other kind's claims on a listener is the one
// refused. Lookups take a few map reads per hostname (no scan of the
// claims), so attaching stays linear in routes.
type hostClaims struct {
	// first is the route that claimed a hostname first, "" when none has.
	first string
	// anyHost is the first route that claimed every hostname ("").
	anyHost string
	// exact holds exact hostnames; wild holds wildcards by their suffix
	// ("*.example.com" as ".example.com"); under holds every suffix a
	// wildcard admitting a claimed hostname ends with (parentSuffixes).
	// Each maps to the first route that claimed it.
	exact, wild, under map[string]string
}

// claim records that route serves host on the listener.
func (c *hostClaims) claim(host, route string) {
	if c.first == "" {
		c.first = route
		c.exact, c.wild, c.under = map[string]string{}, map[string]string{}, map[string]string{}
	}
	switch {
	case host == "":
		setOnce(&c.anyHost, route)
	case strings.HasPrefix(host, "*."):
		setFirst(c.wild, host[1:], route)
	default:
		setFirst(c.exact, host, route)
	}
	for s := range parentSuffixes(host) {
		setFirst(c.under, s, route)
	}
}

// conflict returns a route whose claimed hostnames intersect host, or ""
// when none does.
func (c *hostClaims) conflict(host string) string {
	switch {
	case c == nil || c.first == "":
		return ""
	case host == "":
		return c.first
	case c.anyHost != "":
		return c.anyHost
	}
	if strings.HasPrefix(host, "*.") {
		// The same wildcard, or any hostname it admits.
		if r := c.wild[host[1:]]; r != "" {
			return r
		}
		if r := c.under[host[1:]]; r != "" {
			return r
		}
	} else if r := c.exact[host]; r != "" {
		return r
	}
	// A wider wildcard admitting host.
	for s := range parentSuffixes(host) {
		if r := c.wild[s]; r != "" {
			return r
		}
	}
	return ""
}

// parentSuffixes yields the suffixes of the wildcards that admit host:
// ".b.example.com", ".example.com" and ".com" for "a.b.example.com" and
// for "*.a.b.example.com" alike (a wildcard admits only narrower ones).
func parentSuffixes(host string) func(yield func(string) bool) {
	return func(yield func(string) bool) {
		base := strings.TrimPrefix(host, "*.")
		for i := 0; i < len(base); i++ {
			if base[i] == '.' && !yield(base[i:]) {
				return
			}
		}
	}
}

func setOnce(dst *string, v string) {
	if *dst == "" {
		*dst = v
	}
}

func setFirst(m map[string]string, k, v string) {
	if _, ok := m[k]; !ok {
		m[k] = v
	}
}
