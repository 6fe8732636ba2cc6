package kube

import (
	"context"
	"net/netip"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/berthnet/berth/internal/syncloop"
	"github.com/berthnet/berth/proxy"
)

// Runner keeps the node's service proxy in sync with the cluster.
type Runner struct {
	Node   string
	Reader client.Reader
	Syncer *proxy.Syncer
	// Health answers the health-check node ports; nil leaves them closed.
	Health *proxy.HealthServer
	Resync time.Duration
	// NodePortCIDRs narrow the node addresses node ports answer on.
	NodePortCIDRs []netip.Prefix
	Log           logr.Logger
	loop          *syncloop.Loop
}

// NewRunner returns a runner; call Trigger from watches.
func NewRunner(node string, reader client.Reader, syncer *proxy.Syncer, health *proxy.HealthServer, resync time.Duration, log logr.Logger) *Runner {
	return &Runner{Node: node, Reader: reader, Syncer: syncer, Health: health, Resync: resync, Log: log, loop: syncloop.New()}
}

// Trigger asks for a sync soon.
func (r *Runner) Trigger() { r.loop.Trigger() }

// Start syncs on every trigger and every resync period until ctx ends; a
// failed sync is retried after a second, as a full rebuild.
func (r *Runner) Start(ctx context.Context) error {
	return r.loop.Run(ctx, r.Resync, time.Second, r.sync, func(err error) {
		r.Log.Error(err, "service proxy sync failed; retrying in a second with a full rebuild")
	})
}

func (r *Runner) sync(ctx context.Context) error {
	var svcs corev1.ServiceList
	if err := r.Reader.List(ctx, &svcs); err != nil {
		return err
	}
	var slices discoveryv1.EndpointSliceList
	if err := r.Reader.List(ctx, &slices); err != nil {
		return err
	}
	var nodes corev1.NodeList
	if err := r.Reader.List(ctx, &nodes); err != nil {
		return err
	}
	var cluster []netip.Prefix
	for _, n := range nodes.Items {
		for _, c := range n.Spec.PodCIDRs {
			if p, err := netip.ParsePrefix(c); err == nil {
				cluster = append(cluster, p.Masked())
			}
		}
	}
	st := State(r.Node, svcs.Items, slices.Items, cluster)
	st.NodePortCIDRs = r.NodePortCIDRs
	err := r.Syncer.Sync(ctx, st)
	if r.Health != nil {
		// Counts follow the cluster even when the rules could not be
		// applied: the server then reports the proxy unhealthy. A port
		// that cannot be opened is retried on the next sync.
		if herr := r.Health.Sync(proxy.HealthChecks(st)); herr != nil {
			r.Log.Error(herr, "health-check node ports")
		}
	}
	return err
}
