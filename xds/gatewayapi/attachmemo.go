package gatewayapi

import (
	"cmp"
	"reflect"
	"slices"
	"sort"

	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/berthnet/berth/xds/ir"
)

// attachMemo is the attachment of one translation kept for the next: the
// managed Gateways with their listeners' sorted entries, attached counts
// and clusters, and what each route attached. When the next snapshot
// differs from this one in routes only (and Services or ReferenceGrants
// the routes read, which the route memo turns into changed compiled
// routes), the attachment is updated: the routes that changed or went
// are detached, the changed and new ones attached, and their entries
// inserted in precedence order, instead of attaching and sorting all of
// them again.
//
// It is kept only for snapshots with no GRPCRoute for a managed Gateway:
// which of an HTTPRoute and a GRPCRoute keeps a hostname depends on every
// route attached before (hostClaims), and without GRPCRoutes no route's
// attachment depends on another's. Anything else changing (the spec of a
// GatewayClass or Gateway, a Namespace, Secret or ReferenceGrant, the
// options) means a full attachment.
type attachMemo struct {
	context  *attachContext // what the Gateways were built from
	gateways map[nn]*gatewayState
	order    []*gatewayState
	routes   map[routeKey]*attachedRoute
	// epoch counts updates; an attachedRoute an update found unchanged
	// carries it.
	epoch uint64
	// results are the statuses of the attached routes, sorted as in a
	// Result.
	results []RouteResult
}

// attachedRoute is what one compiled route attached.
type attachedRoute struct {
	seen    uint64 // the last update that found it unchanged
	cr      *compiledRoute
	parents []gwv1.RouteParentStatus
	on      []attachment
}

// attachment is a route attached to a listener for some hostnames.
type attachment struct {
	gs    *gatewayState
	l     *listenerState
	hosts []string
}

// attachContext is what attachment read besides routes, Services and
// EndpointSlices: the GatewayClasses and Gateways (kept to compare their
// specs: the controller's own status writes change their
// resourceVersions on every sync) and the versions of the rest.
type attachContext struct {
	classes  []*gwv1.GatewayClass // by name
	gateways []*gwv1.Gateway      // by namespace/name
	versions []string             // options, Namespaces, Secrets, ReferenceGrants
}

// newAttachContext is the context of a snapshot; nil when an object has
// no resourceVersion.
func newAttachContext(res *Resources, opts Options) *attachContext {
	c := &attachContext{versions: []string{string(opts.gatewayController())}}
	ok := true
	add := func(kind, ns, name, rv string) {
		ok = ok && rv != ""
		c.versions = append(c.versions, kind+"/"+ns+"/"+name+"@"+rv)
	}
	for _, i := range sortedBy(len(res.GatewayClasses), func(i int) (string, string) { return "", res.GatewayClasses[i].Name }) {
		o := &res.GatewayClasses[i]
		ok = ok && o.ResourceVersion != ""
		c.classes = append(c.classes, o)
	}
	for _, i := range sortedBy(len(res.Gateways), func(i int) (string, string) { return res.Gateways[i].Namespace, res.Gateways[i].Name }) {
		o := &res.Gateways[i]
		ok = ok && o.ResourceVersion != ""
		c.gateways = append(c.gateways, o)
	}
	for i := range res.Namespaces {
		o := &res.Namespaces[i]
		add("Namespace", "", o.Name, o.ResourceVersion)
	}
	for i := range res.Secrets {
		o := &res.Secrets[i]
		add("Secret", o.Namespace, o.Name, o.ResourceVersion)
	}
	for i := range res.ReferenceGrants {
		o := &res.ReferenceGrants[i]
		add("ReferenceGrant", o.Namespace, o.Name, o.ResourceVersion)
	}
	if !ok {
		return nil
	}
	// Snapshots list objects in any order.
	slices.Sort(c.versions[1:])
	return c
}

// same reports whether attachment would read the same in both contexts.
// A GatewayClass or Gateway is the same at the same resourceVersion, or
// with the same generation and spec (translation reads nothing else of
// them but the name).
func (c *attachContext) same(o *attachContext) bool {
	if c == nil || o == nil || !slices.Equal(c.versions, o.versions) ||
		len(c.classes) != len(o.classes) || len(c.gateways) != len(o.gateways) {
		return false
	}
	for i, a := range c.classes {
		b := o.classes[i]
		if a.Name != b.Name || (a.ResourceVersion != b.ResourceVersion &&
			(a.Generation != b.Generation || !reflect.DeepEqual(a.Spec, b.Spec))) {
			return false
		}
	}
	for i, a := range c.gateways {
		b := o.gateways[i]
		if a.Namespace != b.Namespace || a.Name != b.Name || (a.ResourceVersion != b.ResourceVersion &&
			(a.Generation != b.Generation || !reflect.DeepEqual(a.Spec, b.Spec))) {
			return false
		}
	}
	return true
}

// newAttachMemo starts recording the attachment to freshly built
// Gateways; nil when the snapshot cannot be updated later.
func newAttachMemo(res *Resources, opts Options, gateways map[nn]*gatewayState, order []*gatewayState) *attachMemo {
	ctx := newAttachContext(res, opts)
	if ctx == nil {
		return nil
	}
	return &attachMemo{context: ctx, gateways: gateways, order: order, routes: map[routeKey]*attachedRoute{}}
}

// add records a route attached; false when its name was seen before.
func (a *attachMemo) add(ar *attachedRoute) bool {
	k := routeKey{ar.cr.kind, ar.cr.ns, ar.cr.name}
	if _, dup := a.routes[k]; dup {
		return false
	}
	a.routes[k] = ar
	a.refClusters(ar, 1, nil)
	return true
}

// refClusters counts the route's attachments in or out of the clusters of
// the Gateways it attached to, noting the names in touched (when not nil).
func (a *attachMemo) refClusters(ar *attachedRoute, delta int, touched map[*gatewayState]map[string]bool) {
	for _, at := range ar.on {
		if touched != nil && touched[at.gs] == nil {
			touched[at.gs] = map[string]bool{}
		}
		for name := range ar.cr.backends.clusters {
			if touched != nil {
				touched[at.gs][name] = true
			}
			at.gs.clusterRefs[name] += delta
			if at.gs.clusterRefs[name] <= 0 {
				delete(at.gs.clusterRefs, name)
				delete(at.gs.clusters, name)
			}
		}
	}
}

// update brings the attachment up to date with res when only routes
// changed, recording the route statuses in out, and returns the Gateways;
// false (and nothing recorded) when it cannot, and the attachment must be
// done in full. It leaves the Gateways' entries sorted.
func (a *attachMemo) update(res *Resources, opts Options, ix *index, mt *memoTable,
	controller gwv1.GatewayController, out *Result) ([]*gatewayState, bool) {
	if a == nil {
		return nil, false
	}
	ctx := newAttachContext(res, opts)
	if !ctx.same(a.context) {
		return nil, false
	}
	for i := range res.GRPCRoutes {
		if r := &res.GRPCRoutes[i]; mayConcern(r.Spec.ParentRefs, r.Namespace, a.gateways) {
			return nil, false
		}
	}
	// Which routes are unchanged is marked on them (no table of 5,000
	// built per change); only the changed ones are gathered.
	a.epoch++
	var (
		changed []*compiledRoute
		fresh   map[routeKey]bool
		kept    int
	)
	for i := range res.HTTPRoutes {
		r := &res.HTTPRoutes[i]
		if !mayConcern(r.Spec.ParentRefs, r.Namespace, a.gateways) {
			continue
		}
		k := routeKey{"HTTPRoute", r.Namespace, r.Name}
		ar := a.routes[k]
		if (ar != nil && ar.seen == a.epoch) || fresh[k] {
			return nil, false // the same name twice
		}
		cr := mt.compile("HTTPRoute", r, ix, func() *compiledRoute { return compileHTTPRoute(r, ix) })
		if ar != nil && ar.cr == cr {
			ar.seen = a.epoch
			kept++
			continue
		}
		if fresh == nil {
			fresh = map[routeKey]bool{}
		}
		fresh[k] = true
		changed = append(changed, cr)
	}
	if len(changed) == 0 && kept == len(a.routes) {
		a.context = ctx
		out.HTTPRoutes = a.resultsCopy()
		return a.order, true
	}

	// From here on the attachment is changed in place: a failure drops
	// it, and the caller attaches in full to Gateways built afresh.
	touched := map[*gatewayState]map[string]bool{}
	for k, ar := range a.routes {
		if ar.seen != a.epoch {
			if !a.detach(ar, touched) {
				return nil, false
			}
			delete(a.routes, k)
		}
	}
	mark := map[*listenerState]int{}
	for _, gs := range a.order {
		for _, l := range gs.listeners {
			mark[l] = len(l.entries)
		}
	}
	slices.SortFunc(changed, attachOrder)
	for _, cr := range changed {
		ar := &attachedRoute{seen: a.epoch, cr: cr}
		ar.parents = attach(cr, a.gateways, ix, controller, &ar.on)
		a.routes[routeKey{cr.kind, cr.ns, cr.name}] = ar
		a.refClusters(ar, 1, touched)
		a.setResult(ar, true)
	}
	for l, n := range mark {
		l.entries = insertEntries(l.entries, n)
	}
	for gs, names := range touched {
		gs.patchClusterList(names)
	}
	a.context = ctx
	out.HTTPRoutes = a.resultsCopy()
	return a.order, true
}

// resultsCopy is results for a Result: nil when empty, as attachAll has it.
func (a *attachMemo) resultsCopy() []RouteResult {
	if len(a.results) == 0 {
		return nil
	}
	return slices.Clone(a.results)
}

// setResult puts a route's status into results, or takes it out.
func (a *attachMemo) setResult(ar *attachedRoute, in bool) {
	if len(ar.parents) == 0 {
		return
	}
	rr := RouteResult{Namespace: ar.cr.ns, Name: ar.cr.name, Generation: ar.cr.generation, Parents: ar.parents}
	i, found := slices.BinarySearchFunc(a.results, rr, routeResultOrder)
	switch {
	case in && found:
		a.results[i] = rr
	case in:
		a.results = slices.Insert(a.results, i, rr)
	case found:
		a.results = slices.Delete(a.results, i, i+1)
	}
}

// patchClusterList brings the Gateway's sorted clusters (as the last
// finishGateway left them) up to date for the cluster names given.
func (gs *gatewayState) patchClusterList(names map[string]bool) {
	if gs.clusterList == nil {
		return
	}
	list := slices.Clone(gs.clusterList)
	for name := range names {
		i, found := slices.BinarySearchFunc(list, name, func(c *ir.Cluster, name string) int { return cmp.Compare(c.Name, name) })
		c, ok := gs.clusters[name]
		switch {
		case ok && found:
			list[i] = c
		case ok:
			list = slices.Insert(list, i, c)
		case found:
			list = slices.Delete(list, i, i+1)
		}
	}
	gs.clusterList = list
}

// detach takes a route's entries, attached count and clusters off the
// listeners it attached to; false when an entry is not where it should be.
func (a *attachMemo) detach(ar *attachedRoute, touched map[*gatewayState]map[string]bool) bool {
	for _, at := range ar.on {
		delete(at.l.attached, ar.cr.precedenceOwner)
		for _, h := range at.hosts {
			for _, e := range ar.cr.hostEntries[ar.cr.entriesKey(h, int32(at.l.spec.Port), at.l.spec.Protocol == gwv1.HTTPSProtocolType)] {
				i := sort.Search(len(at.l.entries), func(i int) bool { return !at.l.entries[i].key.less(e.key) })
				if i == len(at.l.entries) || at.l.entries[i].route != e.route {
					return false
				}
				at.l.entries = slices.Delete(at.l.entries, i, i+1)
			}
		}
	}
	a.refClusters(ar, -1, touched)
	a.setResult(ar, false)
	return true
}

// insertEntries puts the entries appended after the first n (which are
// sorted) in precedence order: each in its place when they are few,
// else by sorting everything.
func insertEntries(es []routeEntry, n int) []routeEntry {
	if len(es)-n > 64 {
		slices.SortFunc(es, compareEntries)
		return es
	}
	tail := slices.Clone(es[n:])
	es = es[:n]
	for _, e := range tail {
		i := sort.Search(len(es), func(i int) bool { return !es[i].key.less(e.key) })
		es = slices.Insert(es, i, e)
	}
	return es
}
