package kube

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/client-go/tools/events"
	crcache "sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/berthnet/berth/api/v1alpha1"
	"github.com/berthnet/berth/bgp"
	"github.com/berthnet/berth/internal/syncloop"
	"github.com/berthnet/berth/internal/syncreport"
	"github.com/berthnet/berth/internal/watch"
	ipamkube "github.com/berthnet/berth/ipam/kube"
)

// Runner keeps the speaker in step with the API server's objects and
// writes this node's sessions into the BGPPeers' status. It reports as the
// agent's other components do: Err for the readiness check, an event on
// this Node when syncs start failing (BGPFailed) and when they succeed
// again (BGPReady), and berth_agent_bgp_* metrics.
type Runner struct {
	Node string
	// Namespace holds the peers' password Secrets (the agents' own).
	Namespace string
	Reader    client.Reader
	// Secrets reads the password Secrets, by name (Reader when nil): not
	// a cache, since the agents may read only the Secrets their Role
	// names, not list the namespace. Each read is kept for Resync.
	Secrets        client.Reader
	Speaker        *bgp.Speaker
	Status         *StatusWriter
	ServeUnclassed bool
	// PodCIDRs advertises the node's pod ranges and installs the other
	// nodes' from Routes (pod network mode bgp).
	PodCIDRs bool
	Routes   *bgp.Routes
	// Resync rebuilds without an event this often (30 s when 0).
	Resync time.Duration
	// Recorder, if set, gets the Node events.
	Recorder events.EventRecorder
	Log      logr.Logger
	// PlanApplied, when set, is called after each apply with its plan.
	PlanApplied func(bgp.Plan)

	loop *syncloop.Loop
	// passwords is owned by the sync loop.
	passwords *passwordSecrets
	services  ipamkube.LBServices
	syncs     *prometheus.CounterVec
	// statusDue asks the status goroutine for a write now.
	statusDue chan struct{}

	reportOnce sync.Once
	reports    *syncreport.Reporter // made at first use, with Recorder

	mu       sync.Mutex
	problems map[string]Problem // by peer
}

// NewRunner returns a runner; set the optional fields, then Watch and
// Start it.
func NewRunner(node, namespace string, reader client.Reader, speaker *bgp.Speaker, log logr.Logger) *Runner {
	return &Runner{Node: node, Namespace: namespace, Reader: reader, Speaker: speaker, Log: log,
		loop: syncloop.New(), statusDue: make(chan struct{}, 1),
		syncs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "berth_agent_bgp_syncs_total", Help: "BGP syncs of this node (objects read, plan compiled and applied to the speaker), by result.",
		}, []string{"result"}),
	}
}

// Collectors lists the runner's metrics and the speaker's, for
// registration.
func (r *Runner) Collectors() []prometheus.Collector {
	return []prometheus.Collector{r.syncs, r.Speaker.Collector()}
}

// Err is nil once a sync has succeeded and the last one did: the
// readiness check. Sessions that are down are not an error of the node
// (the router may be down); they are in the BGPPeers' status.
func (r *Runner) Err() error { return r.reporter().Ready() }

// reporter is the runner's syncreport, made once Recorder is set.
func (r *Runner) reporter() *syncreport.Reporter {
	r.reportOnce.Do(func() {
		r.reports = syncreport.New("BGP", r.Node, "BGP speaker in step with the BGPPeers and BGPAnnouncements", r.Reader, r.Recorder, r.Log)
	})
	return r.reports
}

// Watch subscribes to the informers of c; call it before the cache starts.
func (r *Runner) Watch(ctx context.Context, c crcache.Cache) error {
	fire := r.loop.Trigger
	all := func(client.Object) { fire() }
	return watch.Subscribe(ctx, c, append(r.services.Subs(fire),
		watch.Sub{Object: &corev1.Node{}, Func: func(o client.Object) {
			if o.GetName() == r.Node || r.PodCIDRs {
				fire()
			}
		}},
		watch.Sub{Object: &v1alpha1.IPPool{}, Func: all},
		watch.Sub{Object: &v1alpha1.BGPPeer{}, Func: all},
		watch.Sub{Object: &v1alpha1.BGPAnnouncement{}, Func: all},
	)...)
}

// Start applies the objects to the speaker at once, on every change and
// every Resync (a failed sync is retried after a second), and writes the
// sessions to the status after each sync, when a session changes, and
// every 2 s, until ctx ends.
func (r *Runner) Start(ctx context.Context) error {
	resync := r.resync()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		r.writeStatus(ctx)
	}()
	err := r.loop.Run(ctx, resync, time.Second, r.sync, func(err error) {
		r.Log.Error(err, "BGP sync failed; retrying in a second")
	})
	wg.Wait()
	return err
}

func (r *Runner) resync() time.Duration {
	if r.Resync <= 0 {
		return 30 * time.Second
	}
	return r.Resync
}

// writeStatus owns the StatusWriter: it writes when asked, when a
// session changes state, and every 2 s, until ctx ends.
func (r *Runner) writeStatus(ctx context.Context) {
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.statusDue:
		case <-r.Speaker.Changed():
		case <-t.C:
		}
		if r.Status == nil {
			continue
		}
		r.mu.Lock()
		problems := r.problems
		r.mu.Unlock()
		r.Status.Write(ctx, r.Speaker.States(ctx), problems)
	}
}

func (r *Runner) sync(ctx context.Context) error {
	err := r.syncOnce(ctx)
	result := "ok"
	if err != nil {
		result = "error"
	}
	r.syncs.WithLabelValues(result).Inc()
	r.reporter().Report(ctx, err)
	select {
	case r.statusDue <- struct{}{}:
	default:
	}
	return err
}

func (r *Runner) syncOnce(ctx context.Context) error {
	built, err := r.build(ctx)
	if err != nil {
		return fmt.Errorf("read objects: %w", err)
	}
	r.mu.Lock()
	r.problems = built.PeerProblems()
	r.mu.Unlock()
	for what, why := range built.Problems {
		r.Log.Info("left out of BGP", "object", what, "problem", why)
	}
	if err := r.Speaker.Apply(ctx, built.Plan); err != nil {
		return fmt.Errorf("apply the plan to the speaker: %w", err)
	}
	if r.PlanApplied != nil {
		r.PlanApplied(built.Plan)
	}
	return nil
}

func (r *Runner) build(ctx context.Context) (Built, error) {
	var (
		o     Objects
		self  corev1.Node
		pools v1alpha1.IPPoolList
		peers v1alpha1.BGPPeerList
		anns  v1alpha1.BGPAnnouncementList
	)
	noCopy := client.UnsafeDisableDeepCopy
	if err := r.Reader.Get(ctx, client.ObjectKey{Name: r.Node}, &self); err != nil {
		return Built{}, fmt.Errorf("node %s: %w", r.Node, err)
	}
	for _, l := range []client.ObjectList{&pools, &peers, &anns} {
		if err := r.Reader.List(ctx, l, noCopy); err != nil {
			return Built{}, err
		}
	}
	if r.passwords == nil {
		reader := r.Secrets
		if reader == nil {
			reader = r.Reader
		}
		r.passwords = &passwordSecrets{reader: reader, ttl: r.resync(), now: time.Now}
	}
	var err error
	if o.Secrets, o.ForbiddenSecrets, err = r.passwords.get(ctx, r.Namespace, peers.Items); err != nil {
		return Built{}, err
	}
	if o.Services, o.Slices, err = r.services.Read(ctx, r.Reader); err != nil {
		return Built{}, err
	}
	// The cluster's ranges, where no peer may be, and the pod ranges'
	// owners.
	var nodes corev1.NodeList
	if err := r.Reader.List(ctx, &nodes, noCopy); err != nil {
		return Built{}, err
	}
	var cidrs networkingv1.ServiceCIDRList
	if err := r.Reader.List(ctx, &cidrs, noCopy); err != nil && !meta.IsNoMatchError(err) {
		// A cluster without the ServiceCIDR API (before 1.33) has none.
		return Built{}, fmt.Errorf("list ServiceCIDRs: %w", err)
	}
	o.Self, o.Pools, o.Peers, o.Announcements = &self, pools.Items, peers.Items, anns.Items
	o.Nodes, o.ServiceCIDRs = nodes.Items, cidrs.Items
	o.ServeUnclassed, o.PodCIDRs = r.ServeUnclassed, r.PodCIDRs
	built := Build(o)
	if r.Routes != nil {
		// Only the other nodes' pod ranges, each via its node, may come
		// in over BGP.
		var others []bgp.PodRange
		for _, pr := range built.Plan.PodRanges {
			if pr.Node != r.Node {
				others = append(others, pr)
			}
		}
		r.Routes.Allow(others)
	}
	return built, nil
}
