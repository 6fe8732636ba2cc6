package kube

import (
	"context"
	"net/netip"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	crcache "sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/berthnet/berth/api/v1alpha1"
	"github.com/berthnet/berth/bgp"
	"github.com/berthnet/berth/internal/watch"
	ipamkube "github.com/berthnet/berth/ipam/kube"
)

// Runner keeps the speaker in step with the API server's objects and
// writes this node's sessions into the BGPPeers' status.
type Runner struct {
	Node string
	// Namespace holds the peers' password Secrets (the agents' own).
	Namespace      string
	Reader         client.Reader
	Speaker        *bgp.Speaker
	Status         *StatusWriter
	ServeUnclassed bool
	// PodCIDRs advertises the node's pod ranges and installs the other
	// nodes' from Routes (pod network mode bgp).
	PodCIDRs bool
	Routes   *bgp.Routes
	// Resync rebuilds without an event this often (30 s when 0).
	Resync time.Duration
	Log    logr.Logger

	dirty    watch.Trigger
	services ipamkube.LBServices
	// PlanApplied, when set, is called after each apply with its plan.
	PlanApplied func(bgp.Plan)
}

// Watch subscribes to the informers of c; call it before the cache starts.
func (r *Runner) Watch(ctx context.Context, c crcache.Cache) error {
	r.dirty.Fire()
	all := func(client.Object) { r.dirty.Fire() }
	return watch.Subscribe(ctx, c, append(r.services.Subs(r.dirty.Fire),
		watch.Sub{Object: &corev1.Node{}, Func: func(o client.Object) {
			if o.GetName() == r.Node || r.PodCIDRs {
				r.dirty.Fire()
			}
		}},
		watch.Sub{Object: &corev1.Secret{}, Func: func(o client.Object) {
			if o.GetNamespace() == r.Namespace {
				r.dirty.Fire()
			}
		}},
		watch.Sub{Object: &v1alpha1.IPPool{}, Func: all},
		watch.Sub{Object: &v1alpha1.BGPPeer{}, Func: all},
		watch.Sub{Object: &v1alpha1.BGPAnnouncement{}, Func: all},
	)...)
}

// Start applies the objects to the speaker on every change (at most every
// 20 ms) and every Resync, and the sessions to the status every 2 s,
// until ctx ends.
func (r *Runner) Start(ctx context.Context) error {
	r.dirty.Fire()
	resync := watch.Resync(r.Resync)
	defer resync.Stop()
	status := time.NewTicker(2 * time.Second)
	defer status.Stop()
	var problems map[string]string
	for {
		rebuild := false
		select {
		case <-ctx.Done():
			return nil
		case <-r.dirty.C():
			rebuild = true
		case <-resync.C:
			rebuild = true
		case <-status.C:
		case <-r.Speaker.Changed():
		}
		if !rebuild {
			if r.Status != nil {
				r.Status.Write(ctx, r.Speaker.States(ctx), problems)
			}
			continue
		}
		built, err := r.build(ctx)
		if err != nil {
			r.Log.Error(err, "read objects for BGP")
			time.AfterFunc(time.Second, r.dirty.Fire)
			continue
		}
		problems = built.Problems
		for what, why := range built.Problems {
			r.Log.Info("left out of BGP", "object", what, "problem", why)
		}
		if err := r.Speaker.Apply(ctx, built.Plan, built.ASN); err != nil {
			r.Log.Error(err, "apply BGP plan")
			time.AfterFunc(time.Second, r.dirty.Fire)
		} else if r.PlanApplied != nil {
			r.PlanApplied(built.Plan)
		}
		if r.Status != nil {
			r.Status.Write(ctx, r.Speaker.States(ctx), problems)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (r *Runner) build(ctx context.Context) (Built, error) {
	var (
		o       Objects
		self    corev1.Node
		pools   v1alpha1.IPPoolList
		peers   v1alpha1.BGPPeerList
		anns    v1alpha1.BGPAnnouncementList
		secrets corev1.SecretList
	)
	noCopy := client.UnsafeDisableDeepCopy
	if err := r.Reader.Get(ctx, client.ObjectKey{Name: r.Node}, &self); err != nil {
		return Built{}, err
	}
	for _, l := range []client.ObjectList{&pools, &peers, &anns} {
		if err := r.Reader.List(ctx, l, noCopy); err != nil {
			return Built{}, err
		}
	}
	if err := r.Reader.List(ctx, &secrets, noCopy, client.InNamespace(r.Namespace)); err != nil {
		return Built{}, err
	}
	var err error
	if o.Services, o.Slices, err = r.services.Read(ctx, r.Reader); err != nil {
		return Built{}, err
	}
	if r.Routes != nil {
		// Only the other nodes' pod ranges may come in over BGP.
		var nodes corev1.NodeList
		if err := r.Reader.List(ctx, &nodes, noCopy); err != nil {
			return Built{}, err
		}
		var allow []netip.Prefix
		for i := range nodes.Items {
			if nodes.Items[i].Name == r.Node {
				continue
			}
			for _, c := range nodes.Items[i].Spec.PodCIDRs {
				if p, err := netip.ParsePrefix(c); err == nil {
					allow = append(allow, p)
				}
			}
		}
		r.Routes.Allow(allow)
	}
	o.Self, o.Pools, o.Peers, o.Announcements = &self, pools.Items, peers.Items, anns.Items
	o.Secrets = map[string]*corev1.Secret{}
	for i := range secrets.Items {
		o.Secrets[secrets.Items[i].Name] = &secrets.Items[i]
	}
	o.ServeUnclassed, o.PodCIDRs = r.ServeUnclassed, r.PodCIDRs
	return Build(o), nil
}
