package kube

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	crcache "sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/berthnet/berth/internal/watch"
)

// Watch feeds the runner from the informers of c: which Service changed,
// from Service and EndpointSlice events, and Node events for the pod
// ranges. Call it before the cache starts, after IndexSlices.
func (r *Runner) Watch(ctx context.Context, c crcache.Cache) error {
	return watch.Subscribe(ctx, c,
		watch.Sub{Object: &corev1.Service{}, Func: func(o client.Object) { r.ServiceChanged(o.GetNamespace(), o.GetName()) }},
		watch.Sub{Object: &discoveryv1.EndpointSlice{}, Func: func(o client.Object) {
			if name := o.GetLabels()[discoveryv1.LabelServiceName]; name != "" {
				r.ServiceChanged(o.GetNamespace(), name)
			}
		}},
		watch.Sub{Object: &corev1.Node{}, Func: func(client.Object) { r.NodesChanged() }},
	)
}
