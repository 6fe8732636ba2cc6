package kube

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/client-go/tools/cache"
	crcache "sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Watch feeds the runner from the informers of c: which Service changed,
// from Service and EndpointSlice events, and Node events for the pod
// ranges. Call it before the cache starts, after IndexSlices.
func (r *Runner) Watch(ctx context.Context, c crcache.Cache) error {
	service := func(obj any) {
		if o := object(obj); o != nil {
			r.ServiceChanged(o.GetNamespace(), o.GetName())
		}
	}
	slice := func(obj any) {
		if o := object(obj); o != nil {
			if name := o.GetLabels()[discoveryv1.LabelServiceName]; name != "" {
				r.ServiceChanged(o.GetNamespace(), name)
			}
		}
	}
	nodes := func(any) { r.NodesChanged() }
	for _, w := range []struct {
		obj client.Object
		fn  func(any)
	}{{&corev1.Service{}, service}, {&discoveryv1.EndpointSlice{}, slice}, {&corev1.Node{}, nodes}} {
		inf, err := c.GetInformer(ctx, w.obj)
		if err != nil {
			return err
		}
		fn := w.fn
		// An update can move a slice from one Service to another: both
		// the old and the new one changed.
		if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc: fn, DeleteFunc: fn, UpdateFunc: func(old, obj any) { fn(old); fn(obj) },
		}); err != nil {
			return err
		}
	}
	return nil
}

// object is the object of an event, also of a delete whose final state
// was missed.
func object(obj any) client.Object {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	o, _ := obj.(client.Object)
	return o
}
