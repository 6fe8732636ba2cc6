package kube

import (
	"context"
	"fmt"
	"net/netip"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/events"
	crcache "sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/berthnet/berth/api/v1alpha1"
	"github.com/berthnet/berth/internal/syncloop"
	"github.com/berthnet/berth/internal/syncreport"
	"github.com/berthnet/berth/internal/watch"
	ipamkube "github.com/berthnet/berth/ipam/kube"
	"github.com/berthnet/berth/l2announce"
)

// Node events the runner records (through syncreport) when layer-2
// announcement starts failing on this node and when it works again.
const (
	EventL2Failed = "L2AnnouncementFailed"
	EventL2Ready  = "L2AnnouncementReady"
)

// Announcer is what the runner feeds and asks for its health: an
// *l2announce.Announcer.
type Announcer interface {
	SetDesired(addrs []*l2announce.Address, nodes []l2announce.NodeInfo, groups []*l2announce.Group)
	Err() error
}

// Runner keeps the announcer's input and the heartbeat peers in step with
// the API server's objects, and reports the node's layer-2 health: Ready
// for the readiness check, and a Node event when it changes.
type Runner struct {
	Node      string
	Reader    client.Reader
	Announcer Announcer
	// HeartbeatPort is where every agent listens for heartbeats, on its
	// node's InternalIP addresses.
	HeartbeatPort  uint16
	ServeUnclassed bool
	// Resync rebuilds without an event this often (30 s when 0), to
	// repair a missed one.
	Resync time.Duration
	Log    logr.Logger
	// Recorder, if set, gets an event on this Node when layer 2 starts
	// failing (EventL2Failed, with the error) and when it works again
	// (EventL2Ready).
	Recorder events.EventRecorder

	once     sync.Once
	loop     *syncloop.Loop
	peers    atomic.Pointer[l2announce.PeerSet]
	services ipamkube.LBServices

	reportOnce sync.Once
	reports    *syncreport.Reporter // made at first use, with Recorder
}

func (r *Runner) syncLoop() *syncloop.Loop {
	r.once.Do(func() { r.loop = syncloop.New() })
	return r.loop
}

// Trigger asks for a rebuild soon; the announcer calls it when its own
// health changes, so the readiness and events follow.
func (r *Runner) Trigger() { r.syncLoop().Trigger() }

// Peers is the other agents, with their Nodes' InternalIPs (nil before
// the first sync).
func (r *Runner) Peers() *l2announce.PeerSet { return r.peers.Load() }

// Watch subscribes to the informers of c; call it before the cache starts.
func (r *Runner) Watch(ctx context.Context, c crcache.Cache) error {
	all := func(client.Object) { r.Trigger() }
	return watch.Subscribe(ctx, c, append(r.services.Subs(r.Trigger),
		watch.Sub{Object: &corev1.Node{}, Func: all},
		watch.Sub{Object: &v1alpha1.IPPool{}, Func: all},
		watch.Sub{Object: &v1alpha1.L2Announcement{}, Func: all},
	)...)
}

// Start rebuilds the announcer's input at once, whenever a watched object
// changes (changes during a rebuild fold into one more) and every Resync,
// until ctx ends; a failed rebuild is retried after a second.
func (r *Runner) Start(ctx context.Context) error {
	resync := r.Resync
	if resync <= 0 {
		resync = 30 * time.Second
	}
	return r.syncLoop().Run(ctx, resync, time.Second, r.sync, func(err error) {
		r.Log.Error(err, "layer-2 announcement: sync failed; retrying in a second")
	})
}

// Ready reports why this node's layer-2 announcement is not working, or
// nil once a sync succeeded and the announcer has no problem.
func (r *Runner) Ready() error { return r.reporter().Ready() }

// reporter is the runner's syncreport (readiness and Node events), made
// once Recorder is set.
func (r *Runner) reporter() *syncreport.Reporter {
	r.reportOnce.Do(func() {
		r.reports = syncreport.New("L2Announcement", r.Node, "layer-2 announcement works", r.Reader, r.Recorder, r.Log)
	})
	return r.reports
}

// sync rebuilds the announcer's input and reports the node's layer-2
// health: the rebuild's error, else the announcer's. Only a failed rebuild
// is retried (the announcer retries on its own and says when its health
// changes).
func (r *Runner) sync(ctx context.Context) error {
	err := r.build(ctx)
	health := err
	if health == nil && r.Announcer != nil {
		health = r.Announcer.Err()
	}
	r.reporter().Report(ctx, health)
	return err
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
			return fmt.Errorf("list %T: %w", l, err)
		}
	}
	if o.Services, o.Slices, err = r.services.Read(ctx, r.Reader); err != nil {
		return fmt.Errorf("read LoadBalancer Services: %w", err)
	}
	o.Pools, o.Announcements, o.Nodes, o.ServeUnclassed = pools.Items, anns.Items, nodes.Items, r.ServeUnclassed
	d := Build(o)
	for _, p := range d.Problems {
		r.Log.V(1).Info("left out of layer-2 announcement", "problem", p)
	}
	if r.Announcer != nil {
		r.Announcer.SetDesired(d.Addresses, d.Nodes, d.Groups)
	}

	var peers []l2announce.Peer
	for i := range nodes.Items {
		n := &nodes.Items[i]
		if n.Name == r.Node {
			continue
		}
		p := l2announce.Peer{Name: n.Name, Port: r.HeartbeatPort}
		for _, a := range n.Status.Addresses {
			if a.Type != corev1.NodeInternalIP {
				continue
			}
			if ip, err := netip.ParseAddr(a.Address); err == nil {
				p.Addrs = append(p.Addrs, ip.Unmap())
			}
		}
		if len(p.Addrs) > 0 {
			peers = append(peers, p)
		}
	}
	sort.Slice(peers, func(i, j int) bool { return peers[i].Name < peers[j].Name })
	r.peers.Store(l2announce.NewPeerSet(peers))
	return nil
}
