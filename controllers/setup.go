package controllers

import (
	"context"
	"reflect"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/berthnet/berth/api/v1alpha1"
	"github.com/berthnet/berth/ipam/kube"
)

// SetupLBIPAM registers load-balancer address management with the manager:
// the Service reconciler and the IPPool status reconciler, sharing one
// allocator. Metrics go to reg.
func SetupLBIPAM(mgr ctrl.Manager, opts LBIPAMOptions, reg prometheus.Registerer) error {
	state := newLBState(opts, mgr.GetClient())
	metrics := newIPAMMetrics()
	for _, c := range metrics.Collectors() {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	pokes := make(chan event.GenericEvent, 1)
	poke := func() {
		select {
		case pokes <- event.GenericEvent{Object: &v1alpha1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: "all"}}}:
		default: // a refresh is already pending; it will see this change too
		}
	}
	pending := make(chan event.GenericEvent, 1)
	pokePending := func() {
		select {
		case pending <- event.GenericEvent{Object: &corev1.Service{}}:
		default:
		}
	}
	// markDirty makes the next reconcile rebuild the allocator's config.
	markDirty := func() { state.configDirty.Store(true) }

	svcR := &serviceLBReconciler{
		client:      mgr.GetClient(),
		state:       state,
		recorder:    mgr.GetEventRecorder("berth-controller"),
		metrics:     metrics,
		pokePools:   poke,
		pokePending: pokePending,
	}
	// Every served Service, for changes that may let pending ones through.
	allServed := func(ctx context.Context, ns string) []reconcile.Request {
		var svcs corev1.ServiceList
		if err := mgr.GetClient().List(ctx, &svcs, client.InNamespace(ns)); err != nil {
			return nil
		}
		var out []reconcile.Request
		for i := range svcs.Items {
			if kube.Served(&svcs.Items[i], opts.ServeUnclassed) {
				out = append(out, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: svcs.Items[i].Namespace, Name: svcs.Items[i].Name}})
			}
		}
		return out
	}
	if err := ctrl.NewControllerManagedBy(mgr).
		Named("service-lb-ipam").
		For(&corev1.Service{}).
		Watches(&v1alpha1.IPPool{}, handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, _ client.Object) []reconcile.Request {
			markDirty()
			return allServed(ctx, "")
		}), builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Watches(&corev1.Namespace{}, handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, o client.Object) []reconcile.Request {
			return allServed(ctx, o.GetName())
		}), builder.WithPredicates(predicate.LabelChangedPredicate{})).
		WatchesRawSource(source.Channel(pending, handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, _ client.Object) []reconcile.Request {
			return pendingServed(ctx, mgr.GetClient(), opts.ServeUnclassed)
		}))).
		// Allocation is serialized by the allocator's lock; the workers
		// overlap their status writes.
		WithOptions(controller.Options{MaxConcurrentReconciles: 4}).
		Complete(svcR); err != nil {
		return err
	}

	poolR := &poolStatusReconciler{client: mgr.GetClient(), state: state, metrics: metrics}
	one := handler.EnqueueRequestsFromMapFunc(func(context.Context, client.Object) []reconcile.Request {
		return []reconcile.Request{{NamespacedName: types.NamespacedName{Name: "all"}}}
	})
	dirtyThenOne := handler.EnqueueRequestsFromMapFunc(func(context.Context, client.Object) []reconcile.Request {
		markDirty()
		return []reconcile.Request{{NamespacedName: types.NamespacedName{Name: "all"}}}
	})
	return ctrl.NewControllerManagedBy(mgr).
		Named("ippool-status").
		Watches(&v1alpha1.IPPool{}, dirtyThenOne).
		Watches(&corev1.Node{}, dirtyThenOne, builder.WithPredicates(nodeAddressesChanged())).
		Watches(&networkingv1.ServiceCIDR{}, dirtyThenOne).
		WatchesRawSource(source.Channel(pokes, one)).
		WithOptions(controller.Options{MaxConcurrentReconciles: 1}).
		Complete(poolR)
}

// nodeAddressesChanged passes Node events that change what the allocator
// reserves (addresses, podCIDRs), not the heartbeats every node sends.
func nodeAddressesChanged() predicate.Predicate {
	return predicate.Funcs{
		UpdateFunc: func(e event.UpdateEvent) bool {
			o, ok1 := e.ObjectOld.(*corev1.Node)
			n, ok2 := e.ObjectNew.(*corev1.Node)
			if !ok1 || !ok2 {
				return true
			}
			return !reflect.DeepEqual(o.Status.Addresses, n.Status.Addresses) || !reflect.DeepEqual(o.Spec.PodCIDRs, n.Spec.PodCIDRs)
		},
	}
}

// pendingServed lists the served Services that show no address or say
// they could not get one (a duplicate at start-up among them).
func pendingServed(ctx context.Context, c client.Reader, serveUnclassed bool) []reconcile.Request {
	var svcs corev1.ServiceList
	if err := c.List(ctx, &svcs); err != nil {
		return nil
	}
	var out []reconcile.Request
	for i := range svcs.Items {
		s := &svcs.Items[i]
		c := meta.FindStatusCondition(s.Status.Conditions, ConditionAddressAllocated)
		if kube.Served(s, serveUnclassed) && (len(s.Status.LoadBalancer.Ingress) == 0 || (c != nil && c.Status == metav1.ConditionFalse)) {
			out = append(out, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: s.Namespace, Name: s.Name}})
		}
	}
	return out
}
