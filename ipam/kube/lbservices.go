package kube

import (
	"context"
	"sync/atomic"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/berthnet/berth/internal/watch"
)

// LBServices reads what both announcers (layer 2 and BGP) start from: the
// LoadBalancer Services, and the EndpointSlices of those with policy Local
// (only those: the other slices do not change what is announced), and
// says which events change it.
type LBServices struct {
	// local holds the Services (namespace/name) whose slices matter.
	local atomic.Pointer[map[string]bool]
}

// Subs are the subscriptions that call fire when a LoadBalancer Service,
// or a slice of one with policy Local, changes.
func (l *LBServices) Subs(fire func()) []watch.Sub {
	return []watch.Sub{
		{Object: &corev1.Service{}, Func: func(o client.Object) {
			if s, ok := o.(*corev1.Service); ok && s.Spec.Type == corev1.ServiceTypeLoadBalancer {
				fire()
			}
		}},
		{Object: &discoveryv1.EndpointSlice{}, Func: func(o client.Object) {
			if m := l.local.Load(); m != nil && (*m)[Key(o.GetNamespace(), o.GetLabels()[discoveryv1.LabelServiceName])] {
				fire()
			}
		}},
	}
}

// Read lists the LoadBalancer Services and the slices of those with policy
// Local, from r without copies (do not change them).
func (l *LBServices) Read(ctx context.Context, r client.Reader) ([]corev1.Service, []discoveryv1.EndpointSlice, error) {
	noCopy := client.UnsafeDisableDeepCopy
	var all corev1.ServiceList
	if err := r.List(ctx, &all, noCopy); err != nil {
		return nil, nil, err
	}
	// The Services whose slices matter are known before their slices are
	// read: a slice event from then on fires, and one before is in what
	// is read below.
	local := map[string]bool{}
	var svcs []corev1.Service
	for i := range all.Items {
		s := &all.Items[i]
		if s.Spec.Type != corev1.ServiceTypeLoadBalancer {
			continue
		}
		svcs = append(svcs, *s)
		if s.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal {
			local[Key(s.Namespace, s.Name)] = true
		}
	}
	l.local.Store(&local)
	var slices []discoveryv1.EndpointSlice
	for i := range svcs {
		s := &svcs[i]
		if !local[Key(s.Namespace, s.Name)] {
			continue
		}
		var sl discoveryv1.EndpointSliceList
		if err := r.List(ctx, &sl, noCopy, client.InNamespace(s.Namespace),
			client.MatchingLabels{discoveryv1.LabelServiceName: s.Name}); err != nil {
			return nil, nil, err
		}
		slices = append(slices, sl.Items...)
	}
	return svcs, slices, nil
}
