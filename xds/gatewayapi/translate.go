package gatewayapi

import (
	"cmp"
	"fmt"
	"slices"
	"sort"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/berthnet/berth/xds/ir"
)

// Translate turns a snapshot of resources into the IR of every node group
// Berth serves and the status of every object it manages. It never fails
// as a whole: a problem in one object becomes that object's status and
// leaves the others alone. res is only read.
func Translate(res *Resources, opts Options) *Result {
	return translate(res, opts, nil)
}

func translate(res *Resources, opts Options, memo *Memo) *Result {
	ix := newIndex(res)
	mt := memo.begin()
	defer memo.end(mt)
	var valid *ir.Validator
	if memo != nil {
		valid = &memo.valid
		defer valid.Done()
	}
	out := &Result{}
	controller := opts.gatewayController()

	classes := gatewayClasses(res, controller, out)
	// Attachment is the one step where routes meet: it is redone in
	// full, or, when a Memo kept the last one and nothing but routes
	// changed, updated for the routes that changed (attachMemo).

	var order []*gatewayState
	ok := false
	if memo != nil {
		order, ok = memo.attach.update(res, opts, ix, mt, controller, out)
	}
	if !ok {
		var att *attachMemo
		order, att = attachAll(res, opts, classes, ix, mt, controller, out, memo != nil)
		if memo != nil {
			memo.attach = att
		}
	}

	for _, gs := range order {
		g, gr := finishGateway(gs, valid, ok)
		out.Groups = append(out.Groups, g)
		out.Gateways = append(out.Gateways, gr)
	}
	out.Groups = append(out.Groups, translateIngresses(res, ix, opts.ingressController(), out, valid)...)
	sort.Slice(out.Groups, func(i, j int) bool { return out.Groups[i].Name < out.Groups[j].Name })
	return out
}

// attachAll builds the managed Gateways and attaches every route that
// names one, recording the route statuses in out. With record, it also
// returns what an attachMemo needs to update the attachment later (nil
// when that cannot be done for this snapshot).
func attachAll(res *Resources, opts Options, classes map[string]string, ix *index, mt *memoTable,
	controller gwv1.GatewayController, out *Result, record bool) ([]*gatewayState, *attachMemo) {
	gateways := map[nn]*gatewayState{}
	var order []*gatewayState
	for _, i := range sortedBy(len(res.Gateways), func(i int) (string, string) { return res.Gateways[i].Namespace, res.Gateways[i].Name }) {
		gw := &res.Gateways[i]
		problem, managed := classes[string(gw.Spec.GatewayClassName)]
		if !managed {
			continue
		}
		gs := buildGateway(gw, problem, ix)
		gateways[nn{gw.Namespace, gw.Name}] = gs
		order = append(order, gs)
	}
	var att *attachMemo
	if record {
		att = newAttachMemo(res, opts, gateways, order)
	}

	// Routes attach oldest first (then by namespace/name), whatever their
	// kind: where an HTTPRoute and a GRPCRoute want the same hostname on a
	// listener, the one attached first keeps it (hostClaims).
	routes := make([]*compiledRoute, 0, len(res.HTTPRoutes)+len(res.GRPCRoutes))
	for i := range res.HTTPRoutes {
		if r := &res.HTTPRoutes[i]; mayConcern(r.Spec.ParentRefs, r.Namespace, gateways) {
			routes = append(routes, mt.compile("HTTPRoute", r, ix, func() *compiledRoute { return compileHTTPRoute(r, ix) }))
		}
	}
	for i := range res.GRPCRoutes {
		if r := &res.GRPCRoutes[i]; mayConcern(r.Spec.ParentRefs, r.Namespace, gateways) {
			att = nil // kind conflicts depend on the order of all routes
			routes = append(routes, mt.compile("GRPCRoute", r, ix, func() *compiledRoute { return compileGRPCRoute(r, ix) }))
		}
	}
	slices.SortFunc(routes, attachOrder)
	for _, cr := range routes {
		var on *[]attachment
		var ar *attachedRoute
		if att != nil {
			ar = &attachedRoute{cr: cr}
			on = &ar.on
		}
		parents := attach(cr, gateways, ix, controller, on)
		if att != nil {
			ar.parents = parents
			if !att.add(ar) {
				att = nil
			}
		}
		if len(parents) == 0 {
			continue
		}
		rr := RouteResult{Namespace: cr.ns, Name: cr.name, Generation: cr.generation, Parents: parents}
		if cr.kind == "GRPCRoute" {
			out.GRPCRoutes = append(out.GRPCRoutes, rr)
		} else {
			out.HTTPRoutes = append(out.HTTPRoutes, rr)
		}
	}
	slices.SortFunc(out.HTTPRoutes, routeResultOrder)
	slices.SortFunc(out.GRPCRoutes, routeResultOrder)
	if att != nil {
		att.results = slices.Clone(out.HTTPRoutes)
	}
	return order, att
}

// attachOrder is the order routes attach in: oldest first, then by
// namespace, name and kind.
func attachOrder(a, b *compiledRoute) int {
	if c := a.created.Compare(b.created); c != 0 {
		return c
	}
	return cmp.Or(cmp.Compare(a.ns, b.ns), cmp.Compare(a.name, b.name), cmp.Compare(a.kind, b.kind))
}

func routeResultOrder(a, b RouteResult) int {
	return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
}

// gatewayClasses returns Berth's GatewayClasses by name, each with the
// reason it is not accepted ("" when it is), and records their status.
func gatewayClasses(res *Resources, controller gwv1.GatewayController, out *Result) map[string]string {
	classes := map[string]string{}
	for _, i := range sortedBy(len(res.GatewayClasses), func(i int) (string, string) { return "", res.GatewayClasses[i].Name }) {
		gc := &res.GatewayClasses[i]
		if gc.Spec.ControllerName != controller {
			continue
		}
		c := condition(string(gwv1.GatewayClassConditionStatusAccepted), true, string(gwv1.GatewayClassReasonAccepted),
			"GatewayClass accepted by Berth", gc.Generation)
		if p := gc.Spec.ParametersRef; p != nil {
			msg := fmt.Sprintf("parametersRef %s/%s %s is not supported: Berth's GatewayClasses take no parameters; remove it", p.Group, p.Kind, p.Name)
			c = condition(string(gwv1.GatewayClassConditionStatusAccepted), false, string(gwv1.GatewayClassReasonInvalidParameters), msg, gc.Generation)
			classes[gc.Name] = "GatewayClass " + gc.Name + " is not accepted: " + msg
		} else {
			classes[gc.Name] = ""
		}
		out.GatewayClasses = append(out.GatewayClasses, GatewayClassResult{Name: gc.Name, Conditions: []metav1.Condition{c}})
	}
	return classes
}

// mayConcern is a cheap filter: does any parentRef name a managed Gateway?
func mayConcern(refs []gwv1.ParentReference, ns string, gateways map[nn]*gatewayState) bool {
	for i := range refs {
		pns := ns
		if refs[i].Namespace != nil {
			pns = string(*refs[i].Namespace)
		}
		if gateways[nn{pns, string(refs[i].Name)}] != nil {
			return true
		}
	}
	return false
}

// finishGateway builds a Gateway's group from its served listeners and
// attached routes, validates it with valid, and completes its status. A group that
// fails validation is a bug in this package: it is replaced by an empty one
// and the Gateway says why.
// sorted says the listeners' entries are in precedence order already.
func finishGateway(gs *gatewayState, valid *ir.Validator, sorted bool) (*ir.Group, GatewayResult) {
	gw := gs.gw
	g := &ir.Group{Name: gs.group}
	gr := GatewayResult{Namespace: gw.Namespace, Name: gw.Name, Generation: gw.Generation, Group: gs.group,
		Accepted: gs.accepted, Addresses: gs.addresses}
	clean := gs.accepted && gs.acceptReason == string(gwv1.GatewayReasonAccepted)
	ports := map[int32]bool{}
	for _, l := range gs.listeners {
		gr.Status.Listeners = append(gr.Status.Listeners, l.status(gs))
		if !l.served {
			clean = false
			continue
		}
		if l.resolvedRefs.Status != "True" {
			clean = false
		}
		ports[l.spec.Port] = true
		g.HTTP = append(g.HTTP, &ir.HTTPListener{
			Name:     gw.Namespace + "/" + gw.Name + "/" + string(l.spec.Name),
			Port:     uint32(l.spec.Port),
			Hostname: l.hostname,
			TLS:      l.tls,
			Routes:   sortRoutes(l.entries, sorted),
		})
	}
	sort.Slice(g.HTTP, func(i, j int) bool { return g.HTTP[i].Name < g.HTTP[j].Name })
	if !sorted || gs.clusterList == nil {
		gs.clusterList = sortedClusters(gs.clusters)
	}
	g.Clusters = slices.Clone(gs.clusterList)
	for p := range ports {
		gr.Ports = append(gr.Ports, p)
	}
	sort.Slice(gr.Ports, func(i, j int) bool { return gr.Ports[i] < gr.Ports[j] })

	reason, msg := gs.acceptReason, gs.acceptMessage
	if err := valid.Validate(g); err != nil {
		g = &ir.Group{Name: gs.group}
		gr.Accepted, clean, gr.Ports = false, false, nil
		reason, msg = string(gwv1.GatewayReasonInvalid), "internal error, please report: translation produced an invalid configuration: "+strings.ReplaceAll(err.Error(), "\n", "; ")
	}
	gr.Clean = clean
	gr.Status.Conditions = append(gr.Status.Conditions,
		condition(string(gwv1.GatewayConditionAccepted), gr.Accepted, reason, msg, gw.Generation))
	return g, gr
}

func sortedClusters(m map[string]*ir.Cluster) []*ir.Cluster {
	out := make([]*ir.Cluster, 0, len(m))
	for _, c := range m {
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// sortedBy returns the indices 0..n-1 ordered by (namespace, name).
func sortedBy(n int, key func(int) (string, string)) []int {
	idx := make([]int, n)
	for i := range idx {
		idx[i] = i
	}
	sort.Slice(idx, func(a, b int) bool {
		na, ma := key(idx[a])
		nb, mb := key(idx[b])
		if na != nb {
			return na < nb
		}
		return ma < mb
	})
	return idx
}
