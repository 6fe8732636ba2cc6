package gatewayapi

import (
	"slices"
	"strings"
	"time"

	"github.com/berthnet/berth/xds/ir"
)

// precedence is everything that orders one IR route among the others of
// its listener. Within a hostname the Gateway API orders HTTPRoute matches
// by: Exact path, then the longest PathPrefix (regular expressions between
// the two, an implementation choice), then a method match, then the most
// header matches, then the most query parameter matches; GRPCRoute matches
// by the longest service, then the longest method, then the most header
// matches. Ties go to the oldest route, then the first by
// "<namespace>/<name>", then rule and match order.
type precedence struct {
	host     string
	hostAny  bool // "": any host, last
	hostWild bool
	hostDots int

	grpc bool
	// HTTP: pathRank 3 Exact, 2 Regex, 1 Prefix.
	pathRank, pathLen int
	method            bool
	headers, query    int
	// GRPC.
	service, grpcMethod int

	created     time.Time
	source      string // kind/namespace/name keeps HTTPRoute and Ingress apart
	rule, match int
}

// routeEntry is an IR route with its place in the order.
type routeEntry struct {
	key   *precedence
	route *ir.HTTPRoute
}

func pathRank(m *ir.StringMatch) (rank, length int) {
	if m == nil {
		return 1, 1 // no path match is PathPrefix "/"
	}
	switch m.Type {
	case ir.Exact:
		return 3, len(m.Value)
	case ir.Regex:
		return 2, len(m.Value)
	}
	return 1, len(m.Value)
}

// withHost returns a copy of k for one hostname.
func (k precedence) withHost(h string) *precedence {
	k.host = h
	k.hostAny = h == ""
	k.hostWild = strings.HasPrefix(h, "*.")
	k.hostDots = strings.Count(h, ".")
	return &k
}

// less reports whether a is matched before b.
func (a *precedence) less(b *precedence) bool {
	if a.host != b.host {
		if a.hostAny != b.hostAny {
			return b.hostAny
		}
		if a.hostWild != b.hostWild {
			return b.hostWild
		}
		if a.hostWild && a.hostDots != b.hostDots {
			return a.hostDots > b.hostDots
		}
		if a.hostWild && len(a.host) != len(b.host) {
			return len(a.host) > len(b.host)
		}
		return a.host < b.host
	}
	if a.grpc == b.grpc {
		if !a.grpc {
			if a.pathRank != b.pathRank {
				return a.pathRank > b.pathRank
			}
			if a.pathLen != b.pathLen {
				return a.pathLen > b.pathLen
			}
			if a.method != b.method {
				return a.method
			}
			if a.headers != b.headers {
				return a.headers > b.headers
			}
			if a.query != b.query {
				return a.query > b.query
			}
		} else {
			if a.service != b.service {
				return a.service > b.service
			}
			if a.grpcMethod != b.grpcMethod {
				return a.grpcMethod > b.grpcMethod
			}
			if a.headers != b.headers {
				return a.headers > b.headers
			}
		}
	}
	if !a.created.Equal(b.created) {
		return a.created.Before(b.created)
	}
	if a.source != b.source {
		return a.source < b.source
	}
	if a.rule != b.rule {
		return a.rule < b.rule
	}
	return a.match < b.match
}

// compareEntries orders entries by precedence.
func compareEntries(a, b routeEntry) int {
	switch {
	case a.key.less(b.key):
		return -1
	case b.key.less(a.key):
		return 1
	}
	return 0
}

// sortRoutes orders a listener's routes by precedence (in place, unless
// sorted says they are in order already) and returns them.
func sortRoutes(es []routeEntry, sorted bool) []*ir.HTTPRoute {
	if !sorted {
		slices.SortFunc(es, compareEntries)
	}
	out := make([]*ir.HTTPRoute, len(es))
	for i, e := range es {
		out[i] = e.route
	}
	return out
}
