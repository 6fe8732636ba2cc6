package translator

import (
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"

	"github.com/berthnet/berth/xds/ir"
)

// Memo keeps the Envoy messages of one group's last translation, so the
// next translation of that group reuses the messages of what did not
// change: the route of an IR route given again as the same value (the
// same pointer: IR values are never modified once built, and
// gatewayapi.Memo keeps those of unchanged routes), a virtual host whose
// routes are all reused, a route configuration whose virtual hosts all
// are, and the cluster of an equal IR cluster. The result is the one
// Translate gives, as messages that are, where nothing changed, the very
// ones given before: xds/server neither validates nor hashes those again.
// Messages handed out are shared with later results and must not be
// modified. A Memo serves one group; it is not safe for concurrent use;
// its zero value is ready.
//
// Entries are kept in place, stamped with the translation that last used
// them, and those a successful translation did not use are dropped: a
// change to one route of thousands allocates that route's messages, not
// new tables of every message.
type Memo struct {
	// Validated says that every group given to Translate passed
	// ir.Validate before, as the groups gatewayapi.Translate returns have
	// (and xds.BindPorts keeps them valid): Translate then does not
	// validate them again. A group of thousands of routes costs a
	// validation of every route name and reference, twice per change
	// without it.
	Validated bool

	epoch   uint64
	routes  map[*ir.HTTPRoute]memoEntry[*routev3.Route]
	vhosts  map[vhostKey]memoEntry[*routev3.VirtualHost]
	configs map[string]memoEntry[*routev3.RouteConfiguration]
	// clusters are keyed by name (hashing a name is cheaper than hashing
	// the whole IR cluster) and hold the IR cluster each was built from.
	clusters map[string]clusterEntry
	// valid spares the validation of the group's unchanged routes.
	valid *ir.Validator
}

// memoEntry is a message and the translation that last used it. Entries
// are keyed by what they are built from (an IR route, an IR cluster's
// value), or checked against it before reuse (a virtual host's routes, a
// configuration's virtual hosts), so one left by a failed translation is
// as good as any.
type memoEntry[T any] struct {
	msg   T
	epoch uint64
}

type clusterEntry struct {
	memoEntry[*clusterv3.Cluster]
	from ir.Cluster
}

type vhostKey struct{ config, domain string }

// memoTable is one translation's view of a Memo. A nil memoTable builds
// everything.
type memoTable = Memo

// Translate is the package's Translate, reusing the messages of this
// Memo's earlier calls where they still hold.
func (m *Memo) Translate(g *ir.Group) (Resources, error) {
	if m.valid == nil {
		m.valid = &ir.Validator{}
	}
	if m.routes == nil {
		m.routes = map[*ir.HTTPRoute]memoEntry[*routev3.Route]{}
		m.vhosts = map[vhostKey]memoEntry[*routev3.VirtualHost]{}
		m.configs = map[string]memoEntry[*routev3.RouteConfiguration]{}
		m.clusters = map[string]clusterEntry{}
	}
	m.epoch++
	res, err := translate(g, m)
	m.valid.Done()
	if err != nil {
		return nil, err
	}
	sweep(m.routes, m.epoch)
	sweep(m.vhosts, m.epoch)
	sweep(m.configs, m.epoch)
	for k, e := range m.clusters {
		if e.epoch != m.epoch {
			delete(m.clusters, k)
		}
	}
	return res, nil
}

// sweep drops the entries the translation of epoch did not use.
func sweep[K comparable, T any](t map[K]memoEntry[T], epoch uint64) {
	for k, e := range t {
		if e.epoch != epoch {
			delete(t, k)
		}
	}
}

// validate validates g unless the Memo says it was.
func (m *memoTable) validate(g *ir.Group) error {
	if m == nil {
		return g.Validate()
	}
	if m.Validated {
		return nil
	}
	return m.valid.Validate(g)
}

func (m *memoTable) route(r *ir.HTTPRoute) *routev3.Route {
	if m == nil {
		return buildRoute(r)
	}
	e, ok := m.routes[r]
	if !ok {
		e.msg = buildRoute(r)
	}
	if e.epoch != m.epoch {
		e.epoch = m.epoch
		m.routes[r] = e
	}
	return e.msg
}

// lastVirtualHost is the virtual host the route configuration had for the
// domain, nil for none.
func (m *memoTable) lastVirtualHost(config, domain string) *routev3.VirtualHost {
	if m == nil {
		return nil
	}
	return m.vhosts[vhostKey{config, domain}].msg
}

// useVirtualHost records vh as the route configuration's virtual host for
// its domain.
func (m *memoTable) useVirtualHost(config string, vh *routev3.VirtualHost) {
	if m != nil {
		m.vhosts[vhostKey{config, vh.Name}] = memoEntry[*routev3.VirtualHost]{vh, m.epoch}
	}
}

// routeConfig builds a route configuration, or returns the previous one of
// that name when all its virtual hosts are the previous ones.
func (m *memoTable) routeConfig(name string, ls []*ir.HTTPListener) *routev3.RouteConfiguration {
	rc := buildRouteConfig(name, ls, m)
	if m == nil {
		return rc
	}
	if old := m.configs[name].msg; old != nil && len(old.VirtualHosts) == len(rc.VirtualHosts) {
		same := true
		for i := range old.VirtualHosts {
			if old.VirtualHosts[i] != rc.VirtualHosts[i] {
				same = false
				break
			}
		}
		if same {
			rc = old
		}
	}
	m.configs[name] = memoEntry[*routev3.RouteConfiguration]{rc, m.epoch}
	return rc
}

func (m *memoTable) cluster(c *ir.Cluster) (*clusterv3.Cluster, error) {
	if m == nil {
		return buildCluster(c)
	}
	e, ok := m.clusters[c.Name]
	if !ok || e.from != *c {
		msg, err := buildCluster(c)
		if err != nil {
			return nil, err
		}
		e = clusterEntry{memoEntry: memoEntry[*clusterv3.Cluster]{msg: msg}, from: *c}
	}
	if e.epoch != m.epoch {
		e.epoch = m.epoch
		m.clusters[c.Name] = e
	}
	return e.msg, nil
}
