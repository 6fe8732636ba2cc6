package kube

import (
	"context"
	"fmt"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/client-go/tools/events"
	crcache "sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/berthnet/berth/internal/syncloop"
	"github.com/berthnet/berth/internal/syncreport"
	"github.com/berthnet/berth/internal/watch"
	"github.com/berthnet/berth/netpol"
)

// Runner keeps the node's berth-netpol table in sync with the cluster:
// every event on a Pod, Namespace, NetworkPolicy or this Node asks for a
// sync (events that arrive during one fold into the next), and every
// Resync it syncs anyway. A sync reads the informers' cache, compiles the
// node's ruleset and sends the difference from the last one applied.
type Runner struct {
	Node   string
	Reader client.Reader
	Syncer *netpol.Syncer
	Resync time.Duration
	Log    logr.Logger
	// Prepare runs before each sync (the agent's: EnableBridgeFiltering);
	// its error fails the sync.
	Prepare func() error
	// Recorder, if set, gets an event on this Node when syncs start
	// failing (NetworkPolicyFailed, with the error) and when they succeed
	// again (NetworkPolicyReady).
	Recorder events.EventRecorder
	loop     *syncloop.Loop
	report   *syncreport.Reporter // made at the first sync, with Recorder
}

// NewRunner returns a runner; Watch subscribes it to the informers.
func NewRunner(node string, reader client.Reader, syncer *netpol.Syncer, resync time.Duration, log logr.Logger) *Runner {
	return &Runner{Node: node, Reader: reader, Syncer: syncer, Resync: resync, Log: log, loop: syncloop.New()}
}

// Watch subscribes the runner to the informers of c (before c starts).
func (r *Runner) Watch(ctx context.Context, c crcache.Cache) error {
	fire := func(client.Object) { r.loop.Trigger() }
	node := func(o client.Object) {
		if o.GetName() == r.Node {
			r.loop.Trigger()
		}
	}
	return watch.Subscribe(ctx, c,
		watch.Sub{Object: &networkingv1.NetworkPolicy{}, Func: fire},
		watch.Sub{Object: &corev1.Pod{}, Func: fire},
		watch.Sub{Object: &corev1.Namespace{}, Func: fire},
		watch.Sub{Object: &corev1.Node{}, Func: node})
}

// Start syncs until ctx ends; a failed sync is retried after a second, as
// a full rebuild.
func (r *Runner) Start(ctx context.Context) error {
	return r.loop.Run(ctx, r.Resync, time.Second, r.sync, func(err error) {
		r.Log.Error(err, "NetworkPolicy sync failed; retrying in a second with a full rebuild")
	})
}

// Input reads what the node's ruleset is compiled from.
func (r *Runner) Input(ctx context.Context) (netpol.Input, error) {
	in := netpol.Input{Node: r.Node}
	var node corev1.Node
	if err := r.Reader.Get(ctx, client.ObjectKey{Name: r.Node}, &node); err != nil {
		return in, fmt.Errorf("node %s: %w", r.Node, err)
	}
	in.NodeIPs, in.PodCIDRs = NodeAddrs(&node)
	// The lists come from the cache without copies: only read.
	var pols networkingv1.NetworkPolicyList
	if err := r.Reader.List(ctx, &pols, client.UnsafeDisableDeepCopy); err != nil {
		return in, err
	}
	in.Policies = pols.Items
	var nss corev1.NamespaceList
	if err := r.Reader.List(ctx, &nss, client.UnsafeDisableDeepCopy); err != nil {
		return in, err
	}
	for i := range nss.Items {
		in.Namespaces = append(in.Namespaces, NamespaceOf(&nss.Items[i]))
	}
	var pods corev1.PodList
	if err := r.Reader.List(ctx, &pods, client.UnsafeDisableDeepCopy); err != nil {
		return in, err
	}
	for i := range pods.Items {
		if p, ok := PodOf(&pods.Items[i]); ok {
			in.Pods = append(in.Pods, p)
		}
	}
	return in, nil
}

func (r *Runner) sync(ctx context.Context) error {
	err := r.syncOnce(ctx)
	if r.report == nil {
		r.report = syncreport.New("NetworkPolicy", r.Node, "NetworkPolicy rules in place", r.Reader, r.Recorder, r.Log)
	}
	r.report.Report(ctx, err)
	return err
}

func (r *Runner) syncOnce(ctx context.Context) error {
	if r.Prepare != nil {
		if err := r.Prepare(); err != nil {
			return err
		}
	}
	in, err := r.Input(ctx)
	if err != nil {
		return err
	}
	return r.Syncer.Sync(ctx, in)
}
