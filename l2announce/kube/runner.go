package kube

import (
	"context"
	"net/netip"
	"sort"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	crcache "sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/berthnet/berth/api/v1alpha1"
	"github.com/berthnet/berth/internal/watch"
	ipamkube "github.com/berthnet/berth/ipam/kube"
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

	dirty    watch.Trigger
	peers    atomic.Pointer[[]netip.AddrPort]
	services ipamkube.LBServices
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
	r.dirty.Fire() // the first build
	all := func(client.Object) { r.dirty.Fire() }
	return watch.Subscribe(ctx, c, append(r.services.Subs(r.dirty.Fire),
		watch.Sub{Object: &corev1.Node{}, Func: all},
		watch.Sub{Object: &v1alpha1.IPPool{}, Func: all},
		watch.Sub{Object: &v1alpha1.L2Announcement{}, Func: all},
	)...)
}

// Start rebuilds the announcer's input whenever a watched object changes,
// at most every 20 ms, and every Resync (30 s when 0) whatever happens,
// until ctx ends.
func (r *Runner) Start(ctx context.Context) error {
	r.dirty.Fire()
	resync := watch.Resync(r.Resync)
	defer resync.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-r.dirty.C():
		case <-resync.C:
		}
		if err := r.build(ctx); err != nil {
			r.Log.Error(err, "read objects for layer-2 announcement")
			time.AfterFunc(time.Second, r.dirty.Fire)
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
		o     Objects
		pools v1alpha1.IPPoolList
		anns  v1alpha1.L2AnnouncementList
		nodes corev1.NodeList
		err   error
	)
	for _, l := range []client.ObjectList{&pools, &anns, &nodes} {
		if err := r.Reader.List(ctx, l, client.UnsafeDisableDeepCopy); err != nil {
			return err
		}
	}
	if o.Services, o.Slices, err = r.services.Read(ctx, r.Reader); err != nil {
		return err
	}
	o.Pools, o.Announcements, o.Nodes, o.ServeUnclassed = pools.Items, anns.Items, nodes.Items, r.ServeUnclassed
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
