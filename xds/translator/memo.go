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
type Memo struct {
	routes   map[*ir.HTTPRoute]*routev3.Route
	vhosts   map[vhostKey]*routev3.VirtualHost
	configs  map[string]*routev3.RouteConfiguration
	clusters map[ir.Cluster]*clusterv3.Cluster
	// valid spares the validation of the group's unchanged routes.
	valid *ir.Validator
}

type vhostKey struct{ config, domain string }

// Translate is the package's Translate, reusing the messages of this
// Memo's last successful call where they still hold.
func (m *Memo) Translate(g *ir.Group) (Resources, error) {
	if m.valid == nil {
		m.valid = &ir.Validator{}
	}
	t := &memoTable{prev: *m}
	t.next.valid = m.valid
	res, err := translate(g, t)
	m.valid.Done()
	if err != nil {
		return nil, err
	}
	*m = t.next
	return res, nil
}

// memoTable is one translation's view of a Memo: what it had, what this
// translation keeps. A nil memoTable builds everything.
type memoTable struct {
	prev, next Memo
}

// validator is the Memo's Validator; nil (none) without a Memo.
func (m *memoTable) validator() *ir.Validator {
	if m == nil {
		return nil
	}
	return m.prev.valid
}

func (m *memoTable) route(r *ir.HTTPRoute) *routev3.Route {
	if m == nil {
		return buildRoute(r)
	}
	er, ok := m.prev.routes[r]
	if !ok {
		er = buildRoute(r)
	}
	if m.next.routes == nil {
		m.next.routes = make(map[*ir.HTTPRoute]*routev3.Route, len(m.prev.routes))
	}
	m.next.routes[r] = er
	return er
}

// virtualHost returns the previous virtual host of the route configuration
// and domain when it had the same routes, else vh.
func (m *memoTable) virtualHost(config string, vh *routev3.VirtualHost) *routev3.VirtualHost {
	if m == nil {
		return vh
	}
	k := vhostKey{config, vh.Name}
	if old := m.prev.vhosts[k]; old != nil && sameRoutes(old.Routes, vh.Routes) {
		vh = old
	}
	if m.next.vhosts == nil {
		m.next.vhosts = make(map[vhostKey]*routev3.VirtualHost, len(m.prev.vhosts))
	}
	m.next.vhosts[k] = vh
	return vh
}

func sameRoutes(a, b []*routev3.Route) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// routeConfig builds a route configuration, or returns the previous one of
// that name when all its virtual hosts are the previous ones.
func (m *memoTable) routeConfig(name string, ls []*ir.HTTPListener) *routev3.RouteConfiguration {
	rc := buildRouteConfig(name, ls, m)
	if m == nil {
		return rc
	}
	if old := m.prev.configs[name]; old != nil && len(old.VirtualHosts) == len(rc.VirtualHosts) {
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
	if m.next.configs == nil {
		m.next.configs = map[string]*routev3.RouteConfiguration{}
	}
	m.next.configs[name] = rc
	return rc
}

func (m *memoTable) cluster(c *ir.Cluster) (*clusterv3.Cluster, error) {
	if m == nil {
		return buildCluster(c)
	}
	ec, ok := m.prev.clusters[*c]
	if !ok {
		var err error
		if ec, err = buildCluster(c); err != nil {
			return nil, err
		}
	}
	if m.next.clusters == nil {
		m.next.clusters = make(map[ir.Cluster]*clusterv3.Cluster, len(m.prev.clusters))
	}
	m.next.clusters[*c] = ec
	return ec, nil
}
