package kube

import (
	"context"
	"net/netip"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/client-go/tools/cache"
	crcache "sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/berthnet/berth/api/v1alpha1"
	"github.com/berthnet/berth/l2announce"
)

// Runner keeps the announcer's input and the heartbeat peers in step with
// the API server's objects.
type Runner struct {
	Node      string
	Reader    client.Reader
	Announcer *l2announce.Announcer
	// HeartbeatPort is where every agent listens for heartbeats, on its
	// node's InternalIP addresses.
	HeartbeatPort  uint16
	ServeUnclassed bool
	// Resync rebuilds without an event this often, to repair a missed one.
	Resync time.Duration
	Log    logr.Logger

	dirty chan struct{}
	once  sync.Once
	peers atomic.Pointer[[]netip.AddrPort]
	// localServices are the Services (namespace/name) with policy Local
	// whose EndpointSlices matter.
	localServices atomic.Pointer[map[string]bool]
}

func (r *Runner) trigger() {
	r.once.Do(func() { r.dirty = make(chan struct{}, 1) })
	select {
	case r.dirty <- struct{}{}:
	default:
	}
}

// Peers lists the other agents' heartbeat addresses.
func (r *Runner) Peers() []netip.AddrPort {
	if p := r.peers.Load(); p != nil {
		return *p
	}
	return nil
}

// Watch subscribes to the informers of c; call it before the cache starts.
func (r *Runner) Watch(ctx context.Context, c crcache.Cache) error {
	r.trigger() // the first build
	all := func(any) { r.trigger() }
	lbService := func(obj any) {
		if s, ok := object(obj).(*corev1.Service); ok && s.Spec.Type == corev1.ServiceTypeLoadBalancer {
			r.trigger()
		}
	}
	localSlice := func(obj any) {
		o := object(obj)
		if o == nil {
			return
		}
		if m := r.localServices.Load(); m != nil && (*m)[o.GetNamespace()+"/"+o.GetLabels()[discoveryv1.LabelServiceName]] {
			r.trigger()
		}
	}
	for _, w := range []struct {
		obj client.Object
		fn  func(any)
	}{
		{&corev1.Service{}, lbService}, {&discoveryv1.EndpointSlice{}, localSlice}, {&corev1.Node{}, all},
		{&v1alpha1.IPPool{}, all}, {&v1alpha1.L2Announcement{}, all},
	} {
		inf, err := c.GetInformer(ctx, w.obj)
		if err != nil {
			return err
		}
		fn := w.fn
		if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc: fn, DeleteFunc: fn, UpdateFunc: func(old, obj any) { fn(old); fn(obj) },
		}); err != nil {
			return err
		}
	}
	return nil
}

func object(obj any) client.Object {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	o, _ := obj.(client.Object)
	return o
}

// Start rebuilds the announcer's input whenever a watched object changes,
// at most every 20 ms, and every Resync (30 s when 0) whatever happens,
// until ctx ends.
func (r *Runner) Start(ctx context.Context) error {
	r.trigger()
	every := r.Resync
	if every <= 0 {
		every = 30 * time.Second
	}
	resync := time.NewTicker(every)
	defer resync.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-r.dirty:
		case <-resync.C:
		}
		if err := r.build(ctx); err != nil {
			r.Log.Error(err, "read objects for layer-2 announcement")
			time.AfterFunc(time.Second, r.trigger)
		}
		// Coalesce bursts of events (a Deployment's rollout, a resync).
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (r *Runner) build(ctx context.Context) error {
	var (
		o      Objects
		svcs   corev1.ServiceList
		slices discoveryv1.EndpointSliceList
		pools  v1alpha1.IPPoolList
		anns   v1alpha1.L2AnnouncementList
		nodes  corev1.NodeList
	)
	noCopy := client.UnsafeDisableDeepCopy
	for _, l := range []client.ObjectList{&svcs, &pools, &anns, &nodes} {
		if err := r.Reader.List(ctx, l, noCopy); err != nil {
			return err
		}
	}
	// The Services whose slices matter are known before their slices are
	// read: a slice event from now on triggers a build, and one before
	// is in what is read below.
	local := map[string]bool{}
	for i := range svcs.Items {
		s := &svcs.Items[i]
		if s.Spec.Type == corev1.ServiceTypeLoadBalancer && s.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal {
			local[s.Namespace+"/"+s.Name] = true
		}
	}
	r.localServices.Store(&local)
	for i := range svcs.Items {
		s := &svcs.Items[i]
		if s.Spec.Type != corev1.ServiceTypeLoadBalancer {
			continue
		}
		o.Services = append(o.Services, *s)
		if local[s.Namespace+"/"+s.Name] {
			var sl discoveryv1.EndpointSliceList
			if err := r.Reader.List(ctx, &sl, noCopy, client.InNamespace(s.Namespace),
				client.MatchingLabels{discoveryv1.LabelServiceName: s.Name}); err != nil {
				return err
			}
			slices.Items = append(slices.Items, sl.Items...)
		}
	}
	o.Slices, o.Pools, o.Announcements, o.Nodes, o.ServeUnclassed = slices.Items, pools.Items, anns.Items, nodes.Items, r.ServeUnclassed
	d := Build(o)
	for _, p := range d.Problems {
		r.Log.V(1).Info("left out of layer-2 announcement", "problem", p)
	}
	r.Announcer.SetDesired(d.Addresses, d.Nodes, d.Groups)

	var peers []netip.AddrPort
	for i := range nodes.Items {
		n := &nodes.Items[i]
		if n.Name == r.Node {
			continue
		}
		// One address per peer (its first InternalIP): a heartbeat sent
		// to each of a dual-stack node's addresses would arrive twice,
		// and the second copy be refused as a replay.
		for _, a := range n.Status.Addresses {
			if a.Type != corev1.NodeInternalIP {
				continue
			}
			if ip, err := netip.ParseAddr(a.Address); err == nil {
				peers = append(peers, netip.AddrPortFrom(ip.Unmap(), r.HeartbeatPort))
				break
			}
		}
	}
	sort.Slice(peers, func(i, j int) bool { return peers[i].Compare(peers[j]) < 0 })
	r.peers.Store(&peers)
	return nil
}
