package controllers

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
	gwv1b1 "sigs.k8s.io/gateway-api/apis/v1beta1"

	"github.com/berthnet/berth/internal/watch"
	"github.com/berthnet/berth/xds"
	"github.com/berthnet/berth/xds/gatewayapi"
	"github.com/berthnet/berth/xds/ir"
	"github.com/berthnet/berth/xds/server"
	"github.com/berthnet/berth/xds/translator"
)

// sliceServiceIndex indexes EndpointSlices by "<namespace>/<service>".
const sliceServiceIndex = "berth.dev/service"

// gatewayEngine translates the cluster's Gateway API and Ingress objects,
// serves the result over xDS, provisions each node group's Envoys and
// writes status. One goroutine (Start) does all of it, so its state needs
// no lock except the dirty set the EndpointSlice handler fills.
type gatewayEngine struct {
	client   client.Client
	reader   client.Reader
	opts     GatewayOptions
	pki      *xdsPKI
	reg      prometheus.Registerer
	metrics  *gatewayMetrics
	recorder events.EventRecorder
	server   *server.Server
	// serving is true while this replica serves xDS (it is the leader).
	serving atomic.Bool
	// collecting is true while collectIdle's collection runs.
	collecting atomic.Bool

	translate, eds watch.Trigger
	// lists are the last lists of the kinds translation reads.
	lists [listKinds]*kindList

	// groups are the node groups being served, by name.
	groups  map[string]*groupState
	version uint64
	// result is the last translation, for status writes between syncs.
	result *gatewayapi.Result
	// stage1 carries compiled routes from one translation to the next.
	stage1 gatewayapi.Memo
	// applied holds a hash of each provisioned object as last applied.
	applied map[string]string
	// ingressProblems are the problems last reported per Ingress.
	ingressProblems map[string]string
	// addressProblems are the address problems last reported per Gateway
	// (reportAddressProblem).
	addressProblems map[string]string
	// routesWritten is what each route's status was known to hold after
	// the last status pass, by "<kind>/<namespace>/<name>".
	routesWritten map[routeStatusKey]*routeWritten
	statusPass    uint64

	dirtyMu sync.Mutex
	dirty   map[string]bool // services whose EndpointSlices changed
}

// groupState is what is served to one node group.
type groupState struct {
	ir *ir.Group
	// bound is ir with the ports Envoy binds, as translated.
	bound *ir.Group
	eps   ir.Endpoints
	// loads are the ClusterLoadAssignments by cluster name; sorted is
	// them in name order, as last served, nil when loads moved since.
	loads  map[string]types.Resource
	sorted []types.Resource
	// services maps "<ns>/<service>" to the group's clusters of it.
	services map[string][]*ir.Cluster
	// clusters are the group's clusters by name, for the next serve to
	// keep the endpoints of those that did not change.
	clusters map[string]ir.Cluster
	// memo carries the group's Envoy messages from one translation to the
	// next (the server takes a message it served as unchanged).
	memo *translator.Memo
	// version is the version served; err why the last IR was not served.
	version string
	err     error
}

func (e *gatewayEngine) endpointsChanged(o client.Object) {
	if n := o.GetLabels()[discoveryv1.LabelServiceName]; n != "" {
		e.dirtyMu.Lock()
		e.dirty[o.GetNamespace()+"/"+n] = true
		e.dirtyMu.Unlock()
		e.eds.Fire()
	}
}

func (e *gatewayEngine) nextVersion() string {
	e.version++
	return strconv.FormatUint(e.version, 10)
}

// The kinds translation reads, in gatewayEngine.lists.
const (
	listClasses = iota
	listGateways
	listHTTPRoutes
	listGRPCRoutes
	listGrants
	listNamespaces
	listServices
	listSecrets
	listIngresses
	listIngressClasses
	listKinds
)

func newGatewayLists() [listKinds]*kindList {
	return [listKinds]*kindList{
		listClasses:        newKindList(func() client.ObjectList { return &gwv1.GatewayClassList{} }),
		listGateways:       newKindList(func() client.ObjectList { return &gwv1.GatewayList{} }),
		listHTTPRoutes:     newKindList(func() client.ObjectList { return &gwv1.HTTPRouteList{} }),
		listGRPCRoutes:     newKindList(func() client.ObjectList { return &gwv1.GRPCRouteList{} }),
		listGrants:         newKindList(func() client.ObjectList { return &gwv1b1.ReferenceGrantList{} }),
		listNamespaces:     newKindList(func() client.ObjectList { return &corev1.NamespaceList{} }),
		listServices:       newKindList(func() client.ObjectList { return &corev1.ServiceList{} }),
		listSecrets:        newKindList(func() client.ObjectList { return &corev1.SecretList{} }),
		listIngresses:      newKindList(func() client.ObjectList { return &networkingv1.IngressList{} }),
		listIngressClasses: newKindList(func() client.ObjectList { return &networkingv1.IngressClassList{} }),
	}
}

// gather reads the snapshot translation needs from the cache, listing
// again only the kinds that had events since the last gather.
func (e *gatewayEngine) gather(ctx context.Context) (*gatewayapi.Resources, error) {
	var ls [listKinds]client.ObjectList
	for i, k := range e.lists {
		l, err := k.get(ctx, e.client)
		if err != nil {
			return nil, err
		}
		ls[i] = l
	}
	return &gatewayapi.Resources{
		GatewayClasses:  ls[listClasses].(*gwv1.GatewayClassList).Items,
		Gateways:        ls[listGateways].(*gwv1.GatewayList).Items,
		HTTPRoutes:      ls[listHTTPRoutes].(*gwv1.HTTPRouteList).Items,
		GRPCRoutes:      ls[listGRPCRoutes].(*gwv1.GRPCRouteList).Items,
		ReferenceGrants: ls[listGrants].(*gwv1b1.ReferenceGrantList).Items,
		Namespaces:      ls[listNamespaces].(*corev1.NamespaceList).Items,
		Services:        ls[listServices].(*corev1.ServiceList).Items,
		Secrets:         ls[listSecrets].(*corev1.SecretList).Items,
		Ingresses:       ls[listIngresses].(*networkingv1.IngressList).Items,
		IngressClasses:  ls[listIngressClasses].(*networkingv1.IngressClassList).Items,
	}, nil
}

// sync translates everything, serves the groups whose IR changed, then
// provisions fleets; Start writes status after it.
func (e *gatewayEngine) sync(ctx context.Context) error {
	since := e.metrics.take()
	t := time.Now()
	res, err := e.gather(ctx)
	if err != nil {
		e.metrics.retake(since)
		return err
	}
	t = e.metrics.step(stepGather, t)
	result := e.stage1.Translate(res, gatewayapi.Options{})
	e.result = result
	t = e.metrics.step(stepTranslate, t)
	seen := make(map[string]bool, len(result.Groups))
	served := false
	for _, g := range result.Groups {
		seen[g.Name] = true
		st := e.groups[g.Name]
		if st != nil && sameGroup(st.ir, g) {
			continue // the route change did not touch this group
		}
		if err := e.serve(ctx, g); err != nil {
			ctrl.LoggerFrom(ctx).Error(err, "node group not served; its Envoys keep the last good configuration", "group", g.Name)
			continue
		}
		served = true
	}
	for name := range e.groups {
		if !seen[name] {
			e.server.Delete(name)
			delete(e.groups, name)
		}
	}
	t = e.metrics.step(stepServe, t)
	if served && !since.IsZero() {
		e.metrics.served.Observe(t.Sub(since).Seconds())
	}
	// Status follows once syncs pause (Start, settleTimer), also when a
	// fleet cannot be provisioned: it must not hold back the status of
	// every other object.
	err = e.provision(ctx, result)
	e.metrics.step(stepProvision, t)
	return err
}

// serve translates one group and publishes it with its endpoints. The
// endpoints and assignments of clusters the group served before are kept
// (EndpointSlice changes reach them through syncEndpoints); only new
// clusters' are read.
func (e *gatewayEngine) serve(ctx context.Context, g *ir.Group) error {
	prev := e.groups[g.Name]
	if prev != nil && prev.ir != nil && sameClusters(prev.ir.Clusters, g.Clusters) {
		// The same clusters (a route changed): the endpoint tables of
		// thousands of clusters stay as they are.
		st := *prev
		st.ir, st.bound, st.err = g, xds.BindPorts(g), nil
		return e.publish(ctx, &st)
	}
	st := &groupState{ir: g, bound: xds.BindPorts(g), services: map[string][]*ir.Cluster{},
		clusters: make(map[string]ir.Cluster, len(g.Clusters)), loads: make(map[string]types.Resource, len(g.Clusters)),
		eps: make(ir.Endpoints, len(g.Clusters)), memo: &translator.Memo{Validated: true}}
	if prev != nil {
		st.memo = prev.memo
	}
	var fresh []*ir.Cluster
	for _, c := range g.Clusters {
		k := c.Namespace + "/" + c.Service
		st.services[k] = append(st.services[k], c)
		st.clusters[c.Name] = *c
		if prev != nil {
			if pc, ok := prev.clusters[c.Name]; ok && pc == *c {
				if l, ok := prev.loads[c.Name]; ok {
					st.eps[c.Name], st.loads[c.Name] = prev.eps[c.Name], l
					continue
				}
			}
		}
		fresh = append(fresh, c)
	}
	eps, err := e.endpoints(ctx, fresh)
	if err != nil {
		return err
	}
	for _, c := range fresh {
		st.eps[c.Name] = eps[c.Name]
		st.loads[c.Name] = translator.ClusterLoadAssignment(c.Name, eps[c.Name])
	}
	if prev != nil && len(fresh) == 0 && len(st.loads) == len(prev.loads) && prev.sorted != nil {
		// The same clusters with the same assignments: the very list, which
		// the server takes without looking at each of thousands.
		st.sorted = prev.sorted
	} else {
		st.sorted = st.sortedLoads()
	}
	return e.publish(ctx, st)
}

// publish translates a group's IR and hands it, with its assignments, to
// the xDS server; st becomes what the group is served.
func (e *gatewayEngine) publish(ctx context.Context, st *groupState) error {
	g := st.ir
	res, err := st.memo.Translate(st.bound)
	if err != nil {
		e.keepError(g.Name, err)
		return err
	}
	if st.sorted == nil {
		st.sorted = st.sortedLoads() // assignments moved since (syncEndpoints)
	}
	res[resourcev3.EndpointType] = st.sorted
	st.version = e.nextVersion()
	if err := e.server.Set(ctx, g.Name, st.version, res); err != nil {
		e.keepError(g.Name, err)
		return err
	}
	e.groups[g.Name] = st
	return nil
}

// keepError records why a group's new IR is not served while the old
// configuration stays; the next sync retries it.
func (e *gatewayEngine) keepError(group string, err error) {
	if st := e.groups[group]; st != nil {
		st.err = err
		st.ir = nil // translate again next time
	}
}

func (st *groupState) sortedLoads() []types.Resource {
	names := make([]string, 0, len(st.loads))
	for n := range st.loads {
		names = append(names, n)
	}
	sort.Strings(names)
	out := make([]types.Resource, len(names))
	for i, n := range names {
		out[i] = st.loads[n]
	}
	return out
}

// endpoints reads the EndpointSlices of the clusters' Services.
func (e *gatewayEngine) endpoints(ctx context.Context, clusters []*ir.Cluster) (ir.Endpoints, error) {
	var slices []discoveryv1.EndpointSlice
	done := map[string]bool{}
	for _, c := range clusters {
		k := c.Namespace + "/" + c.Service
		if done[k] {
			continue
		}
		done[k] = true
		var l discoveryv1.EndpointSliceList
		// Only read, as in gather.
		if err := e.client.List(ctx, &l, client.InNamespace(c.Namespace), client.MatchingFields{sliceServiceIndex: k}, client.UnsafeDisableDeepCopy); err != nil {
			return nil, fmt.Errorf("EndpointSlices of %s: %w", k, err)
		}
		slices = append(slices, l.Items...)
	}
	return gatewayapi.Endpoints(clusters, slices), nil
}

// syncEndpoints pushes new endpoints of the Services whose EndpointSlices
// changed, to the groups that route to them: EDS only, no translation.
func (e *gatewayEngine) syncEndpoints(ctx context.Context) error {
	e.dirtyMu.Lock()
	dirty := e.dirty
	e.dirty = map[string]bool{}
	e.dirtyMu.Unlock()
	var errs []error
	for name, st := range e.groups {
		var clusters []*ir.Cluster
		for svc := range dirty {
			clusters = append(clusters, st.services[svc]...)
		}
		if len(clusters) == 0 || st.ir == nil {
			continue
		}
		eps, err := e.endpoints(ctx, clusters)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		changed := map[string]types.Resource{}
		for _, c := range clusters {
			if slices.Equal(st.eps[c.Name], eps[c.Name]) {
				continue
			}
			changed[c.Name] = translator.ClusterLoadAssignment(c.Name, eps[c.Name])
		}
		if len(changed) == 0 {
			continue
		}
		// Only the changed assignments: the server merges them into the
		// group's others.
		version := e.nextVersion()
		if err := e.server.SetEndpoints(ctx, name, version, changed); err != nil {
			errs = append(errs, err)
			continue
		}
		st.version = version
		st.sorted = nil
		for n, l := range changed {
			st.eps[n], st.loads[n] = eps[n], l
		}
	}
	if len(errs) > 0 {
		// Put the services back so the retry sees them.
		e.dirtyMu.Lock()
		for s := range dirty {
			e.dirty[s] = true
		}
		e.dirtyMu.Unlock()
		return fmt.Errorf("%d groups: %v", len(errs), errs[0])
	}
	return nil
}

// sameClusters reports whether two cluster lists are equal, by pointer
// first (gatewayapi.Memo hands unchanged clusters again).
func sameClusters(a, b []*ir.Cluster) bool {
	return slices.EqualFunc(a, b, func(x, y *ir.Cluster) bool { return x == y || *x == *y })
}

// sameGroup reports whether two IRs of a group are equal, cheaply where
// they share values: gatewayapi.Memo gives unchanged routes the same IR
// values, so a route change compares one route, not ten thousand.
func sameGroup(a, b *ir.Group) bool {
	if a == nil || b == nil {
		return a == b
	}
	if a.Name != b.Name || len(a.HTTP) != len(b.HTTP) || len(a.Clusters) != len(b.Clusters) {
		return false
	}
	for i, x := range a.Clusters {
		if y := b.Clusters[i]; x != y && *x != *y {
			return false
		}
	}
	for i, x := range a.HTTP {
		y := b.HTTP[i]
		if x == y {
			continue
		}
		if x.Name != y.Name || x.Port != y.Port || x.Hostname != y.Hostname || !reflect.DeepEqual(x.TLS, y.TLS) || len(x.Routes) != len(y.Routes) {
			return false
		}
		for j, r := range x.Routes {
			if q := y.Routes[j]; r != q && !reflect.DeepEqual(r, q) {
				return false
			}
		}
	}
	return true
}
