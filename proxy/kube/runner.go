package kube

import (
	"context"
	"net/netip"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/berthnet/berth/proxy"
)

// Runner keeps the node's service proxy in sync with the cluster.
type Runner struct {
	Node    string
	Reader  client.Reader
	Syncer  *proxy.Syncer
	Resync  time.Duration
	Log     logr.Logger
	trigger chan struct{}
}

// NewRunner returns a runner; call Trigger from watches.
func NewRunner(node string, reader client.Reader, syncer *proxy.Syncer, resync time.Duration, log logr.Logger) *Runner {
	return &Runner{Node: node, Reader: reader, Syncer: syncer, Resync: resync, Log: log, trigger: make(chan struct{}, 1)}
}

// Trigger asks for a sync soon.
func (r *Runner) Trigger() {
	select {
	case r.trigger <- struct{}{}:
	default:
	}
}

// Start syncs on every trigger and every resync period until ctx ends.
func (r *Runner) Start(ctx context.Context) error {
	t := time.NewTicker(r.Resync)
	defer t.Stop()
	for {
		if err := r.sync(ctx); err != nil {
			r.Log.Error(err, "service proxy sync failed; retrying in a second with a full rebuild")
			time.AfterFunc(time.Second, r.Trigger)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-r.trigger:
		case <-t.C:
		}
	}
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
	return r.Syncer.Sync(ctx, State(r.Node, svcs.Items, slices.Items, cluster))
}
