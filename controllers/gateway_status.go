package controllers

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"sync"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/berthnet/berth/xds/gatewayapi"
	"github.com/berthnet/berth/xds/provision"
)

// writeStatuses writes what the last translation and the xDS server say
// into status: every GatewayClass, Gateway, route and Ingress when only is
// nil, else the Gateways and Ingresses of the node groups in only (an
// Envoy connected, ACKed or NACKed). Unchanged statuses are not written.
func (e *gatewayEngine) writeStatuses(ctx context.Context, only []string) error {
	r := e.result
	if r == nil {
		return nil
	}
	want := func(group string) bool { return only == nil || slices.Contains(only, group) }
	var errs []error
	if only == nil {
		for _, c := range r.GatewayClasses {
			errs = append(errs, e.writeGatewayClass(ctx, c))
		}
		errs = append(errs, e.writeRoutes(ctx, r))
	}
	for _, g := range r.Gateways {
		if want(g.Group) {
			errs = append(errs, e.writeGateway(ctx, g))
		}
	}
	for _, in := range r.Ingresses {
		if want(in.Group) {
			errs = append(errs, e.writeIngress(ctx, in))
		}
	}
	return errors.Join(errs...)
}

// routeStatusWorkers is how many route statuses are written at once. One
// at a time, each write a round trip to the API server, the first sync of
// 5,000 routes held the engine (and every route or endpoint change behind
// it) for about a minute.
const routeStatusWorkers = 8

// routeWritten is what the engine last knew a route's status to be: the
// parents translation wanted (ours) and the route's resourceVersion that
// held them, after our patch or when a read found them in place.
type routeWritten struct {
	resourceVersion string
	parents         []gwv1.RouteParentStatus
	pass            uint64 // the last status pass that found it so
}

// routeStatusKey names a route in gatewayEngine.routesWritten.
type routeStatusKey struct{ kind, namespace, name string }

// writeRoutes writes the status of every route, routeStatusWorkers at a
// time. A route whose cached resourceVersion is the one the engine last
// saw holding what translation still wants is skipped without a compare:
// a sync after one route changed costs one status check, not 5,000. That
// check runs here, without copying or allocating (translation hands an
// unchanged route the very status slice it had: a pointer compare); the
// workers get only the routes that need a look.
func (e *gatewayEngine) writeRoutes(ctx context.Context, r *gatewayapi.Result) error {
	if e.routesWritten == nil {
		e.routesWritten = map[routeStatusKey]*routeWritten{}
	}
	e.statusPass++
	pass := e.statusPass
	n := len(r.HTTPRoutes) + len(r.GRPCRoutes)
	route := func(i int) (routeStatusKey, gatewayapi.RouteResult) {
		if i < len(r.HTTPRoutes) {
			rt := r.HTTPRoutes[i]
			return routeStatusKey{"HTTPRoute", rt.Namespace, rt.Name}, rt
		}
		rt := r.GRPCRoutes[i-len(r.HTTPRoutes)]
		return routeStatusKey{"GRPCRoute", rt.Namespace, rt.Name}, rt
	}
	var (
		httpRoute gwv1.HTTPRoute
		grpcRoute gwv1.GRPCRoute
		slow      []int
	)
	for i := range n {
		k, rt := route(i)
		last := e.routesWritten[k]
		if last == nil || !sameParents(last.parents, rt.Parents) {
			slow = append(slow, i)
			continue
		}
		var cached client.Object = &httpRoute
		if k.kind == "GRPCRoute" {
			cached = &grpcRoute
		}
		err := e.client.Get(ctx, types.NamespacedName{Namespace: k.namespace, Name: k.name}, cached, client.UnsafeDisableDeepCopy)
		if err != nil || cached.GetResourceVersion() != last.resourceVersion {
			slow = append(slow, i)
			continue
		}
		last.pass = pass
		last.parents = rt.Parents // the same: next time, the same slice
	}

	errs := make([]error, len(slow))
	known := make([]*routeWritten, len(slow))
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(routeStatusWorkers, len(slow)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range next {
				k, rt := route(slow[j])
				var obj client.Object = &gwv1.HTTPRoute{}
				if k.kind == "GRPCRoute" {
					obj = &gwv1.GRPCRoute{}
				}
				// The map is only read while the workers run.
				known[j], errs[j] = e.writeRoute(ctx, obj, rt, e.routesWritten[k])
			}
		}()
	}
	for j := range slow {
		next <- j
	}
	close(next)
	wg.Wait()
	for j, i := range slow {
		if known[j] != nil {
			k, _ := route(i)
			known[j].pass = pass
			e.routesWritten[k] = known[j]
		}
	}
	for k, w := range e.routesWritten {
		if w.pass != pass {
			delete(e.routesWritten, k) // gone, or unknown after a failed write
		}
	}
	return errors.Join(errs...)
}

// sameParents compares what translation wants for a route, first by
// identity: translation hands an unchanged route the slice it had before.
func sameParents(a, b []gwv1.RouteParentStatus) bool {
	if len(a) != len(b) {
		return false
	}
	if len(a) == 0 || &a[0] == &b[0] {
		return true
	}
	return reflect.DeepEqual(a, b)
}

func (e *gatewayEngine) writeGatewayClass(ctx context.Context, c gatewayapi.GatewayClassResult) error {
	var obj gwv1.GatewayClass
	if err := e.client.Get(ctx, types.NamespacedName{Name: c.Name}, &obj); err != nil {
		return client.IgnoreNotFound(err)
	}
	next := keepTransitions(obj.Status.Conditions, c.Conditions)
	if equality.Semantic.DeepEqual(obj.Status.Conditions, next) {
		return nil
	}
	orig := obj.DeepCopy()
	obj.Status.Conditions = next
	return patchStatus(ctx, e.client, &obj, orig)
}

func (e *gatewayEngine) writeGateway(ctx context.Context, g gatewayapi.GatewayResult) error {
	var obj gwv1.Gateway
	if err := e.client.Get(ctx, types.NamespacedName{Namespace: g.Namespace, Name: g.Name}, &obj); err != nil {
		return client.IgnoreNotFound(err)
	}
	st := g.Status.DeepCopy()
	var prog gatewayapi.Programming
	if e.server != nil {
		gs := e.server.Status(g.Group)
		served := e.groups[g.Group]
		prog.Acked = served != nil && served.err == nil && gs.InSync()
		if n := gs.CurrentNACK(); n != nil {
			prog.Rejected = fmt.Sprintf("%s version %s (node %s): %s", shortTypeURL(string(n.TypeURL)), n.Version, n.Node, n.Message)
		} else if served != nil && served.err != nil {
			prog.Rejected = "not served: " + served.err.Error()
		}
	}
	for _, a := range e.gatewayAddresses(ctx, g.Namespace, g.Name) {
		typ := gwv1.IPAddressType
		if !isIP(a) {
			typ = gwv1.HostnameAddressType
		}
		prog.Addresses = append(prog.Addresses, gwv1.GatewayStatusAddress{Type: &typ, Value: a})
	}
	e.reportAddressProblem(ctx, &obj, len(prog.Addresses) > 0)
	if len(prog.Addresses) == 0 {
		prog.AddressProblem = e.addressProblem(ctx, g.Namespace, g.Name)
	}
	gatewayapi.SetProgrammed(st, g.Generation, prog)
	st.Conditions = keepTransitions(obj.Status.Conditions, st.Conditions)
	for i := range st.Listeners {
		var prev []metav1.Condition
		for _, old := range obj.Status.Listeners {
			if old.Name == st.Listeners[i].Name {
				prev = old.Conditions
			}
		}
		st.Listeners[i].Conditions = keepTransitions(prev, st.Listeners[i].Conditions)
	}
	if equality.Semantic.DeepEqual(&obj.Status, st) {
		return nil
	}
	orig := obj.DeepCopy()
	obj.Status = *st
	return patchStatus(ctx, e.client, &obj, orig)
}

// addressProblem is why a Gateway's fleet Service has no address, as IPAM
// said in its AddressAllocated condition ("" while none is known).
func (e *gatewayEngine) addressProblem(ctx context.Context, namespace, name string) string {
	var svc corev1.Service
	key := types.NamespacedName{Namespace: e.opts.Namespace, Name: provision.GatewayFleetName(namespace, name)}
	if e.client.Get(ctx, key, &svc) != nil {
		return ""
	}
	c := meta.FindStatusCondition(svc.Status.Conditions, ConditionAddressAllocated)
	if c == nil || c.Status != metav1.ConditionFalse {
		return ""
	}
	return c.Reason + ": " + c.Message
}

// route is an HTTPRoute or a GRPCRoute: both keep parents in the same place.
func routeParents(o client.Object) *[]gwv1.RouteParentStatus {
	switch r := o.(type) {
	case *gwv1.HTTPRoute:
		return &r.Status.Parents
	case *gwv1.GRPCRoute:
		return &r.Status.Parents
	}
	return nil
}

// writeRoute brings one route's status to what translation says, unless
// last (what the engine knew of it after the previous pass) shows that it
// already holds it. It returns what it knows of the route now (nil when
// unknown: the route is gone, or a write failed or conflicted).
func (e *gatewayEngine) writeRoute(ctx context.Context, cached client.Object, rt gatewayapi.RouteResult, last *routeWritten) (*routeWritten, error) {
	// Every sync looks at every route (5,000 deep copies a sync, at the
	// issue's benchmark size): read the cache's own object, only read it,
	// and copy it only to patch it.
	if err := e.client.Get(ctx, types.NamespacedName{Namespace: rt.Namespace, Name: rt.Name}, cached, client.UnsafeDisableDeepCopy); err != nil {
		return nil, client.IgnoreNotFound(err)
	}
	// Translation gives conditions without transition times, so the same
	// wish is the same value; the same resourceVersion is the same object.
	if last != nil && last.resourceVersion == cached.GetResourceVersion() && sameParents(last.parents, rt.Parents) {
		last.parents = rt.Parents
		return last, nil
	}
	parents := routeParents(cached)
	ours := slices.Clone(rt.Parents)
	for i := range ours {
		var prev []metav1.Condition
		for _, old := range *parents {
			if equality.Semantic.DeepEqual(old.ParentRef, ours[i].ParentRef) && old.ControllerName == ours[i].ControllerName {
				prev = old.Conditions
			}
		}
		ours[i].Conditions = keepTransitions(prev, ours[i].Conditions)
	}
	next := gatewayapi.MergeRouteParents(*parents, ours, gatewayapi.GatewayControllerName)
	if equality.Semantic.DeepEqual(*parents, next) {
		return &routeWritten{resourceVersion: cached.GetResourceVersion(), parents: rt.Parents}, nil
	}
	// The patch's answer is decoded into obj: nothing in it may be shared
	// with the cache or the translation (next holds their parentRefs).
	obj := cached.DeepCopyObject().(client.Object)
	fresh := make([]gwv1.RouteParentStatus, len(next))
	for i := range next {
		next[i].DeepCopyInto(&fresh[i])
	}
	*routeParents(obj) = fresh
	// Other controllers may hold parents of the same route: never
	// overwrite a status this read did not see.
	err := e.client.Status().Patch(ctx, obj, client.MergeFromWithOptions(cached, client.MergeFromWithOptimisticLock{}))
	if apierrors.IsConflict(err) {
		e.translate.Fire()
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return &routeWritten{resourceVersion: obj.GetResourceVersion(), parents: rt.Parents}, nil
}

func (e *gatewayEngine) writeIngress(ctx context.Context, in gatewayapi.IngressResult) error {
	var obj networkingv1.Ingress
	if err := e.client.Get(ctx, types.NamespacedName{Namespace: in.Namespace, Name: in.Name}, &obj); err != nil {
		return client.IgnoreNotFound(err)
	}
	class, _ := strings.CutPrefix(in.Group, "ingress/")
	var lb []networkingv1.IngressLoadBalancerIngress
	for _, a := range e.fleetAddresses(ctx, e.opts.Namespace, provision.ObjectName("ingress", class)) {
		if isIP(a) {
			lb = append(lb, networkingv1.IngressLoadBalancerIngress{IP: a})
		} else {
			lb = append(lb, networkingv1.IngressLoadBalancerIngress{Hostname: a})
		}
	}
	// What could not be served is an event each time it changes.
	key := in.Namespace + "/" + in.Name
	if problems := strings.Join(in.Problems, "\n"); e.ingressProblems[key] != problems {
		for _, p := range in.Problems {
			e.recorder.Eventf(&obj, nil, corev1.EventTypeWarning, "NotServed", "Translate", "%s", p)
		}
		e.ingressProblems[key] = problems
	}
	if equality.Semantic.DeepEqual(obj.Status.LoadBalancer.Ingress, lb) {
		return nil
	}
	orig := obj.DeepCopy()
	obj.Status.LoadBalancer.Ingress = lb
	return patchStatus(ctx, e.client, &obj, orig)
}

func patchStatus(ctx context.Context, c client.Client, obj, orig client.Object) error {
	if err := c.Status().Patch(ctx, obj, client.MergeFrom(orig)); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("status of %T %s/%s: %w", obj, obj.GetNamespace(), obj.GetName(), err)
	}
	return nil
}

// keepTransitions gives each condition of next the lastTransitionTime it
// had in old when its status did not change, and now otherwise, so a
// rewrite of the same status is no change.
func keepTransitions(old, next []metav1.Condition) []metav1.Condition {
	out := slices.Clone(next)
	for i := range out {
		c := &out[i]
		c.LastTransitionTime = metav1.Now()
		for _, o := range old {
			// The Gateway API CRDs default conditions to Unknown at the
			// epoch: that is no transition to keep.
			if o.Type == c.Type && o.Status == c.Status && o.LastTransitionTime.Unix() > 0 {
				c.LastTransitionTime = o.LastTransitionTime
			}
		}
	}
	return out
}

func shortTypeURL(t string) string {
	if i := strings.LastIndex(t, "."); i >= 0 {
		return t[i+1:]
	}
	return t
}

func isIP(s string) bool {
	_, err := netip.ParseAddr(s)
	return err == nil
}
