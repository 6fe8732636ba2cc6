// Command berth-agent is Berth's per-node agent (a DaemonSet with host
// networking). It finds its own Node and serves health and metrics; the
// announcers, pod routes, service proxy and NetworkPolicy register with it as
// they land.
package main

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"os"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/fields"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/berthnet/berth/internal/daemon"
)

// The agent reads its own Node (the cache is limited to it, but list/watch
// are cluster-scoped verbs) and records Events.
//
// +kubebuilder:rbac:groups="",resources=nodes,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=events,verbs=create;patch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "berth-agent:", err)
		os.Exit(1)
	}
}

func run() error {
	var (
		opts     daemon.Options
		nodeName string
	)
	opts.Bind(flag.CommandLine, ":9190", ":9191")
	flag.StringVar(&nodeName, "node-name", os.Getenv("NODE_NAME"), "this node's name (default $NODE_NAME, set from the downward API)")
	flag.Parse()
	if _, done := opts.Start("berth-agent", os.Stdout, "node", nodeName); done {
		return nil
	}
	if nodeName == "" {
		return fmt.Errorf("no node name: pass --node-name or set NODE_NAME (spec.nodeName through the downward API)")
	}
	scheme, err := daemon.Scheme()
	if err != nil {
		return err
	}
	cfg, err := ctrl.GetConfig()
	if err != nil {
		return fmt.Errorf("kubeconfig: %w", err)
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                 scheme,
		Metrics:                metricsserver.Options{BindAddress: opts.MetricsAddr},
		HealthProbeBindAddress: opts.ProbeAddr,
		// An agent sees only its own Node, not every Node of the cluster.
		Cache: cache.Options{ByObject: map[client.Object]cache.ByObject{
			&corev1.Node{}: {Field: fields.OneTermEqualSelector("metadata.name", nodeName)},
		}},
	})
	if err != nil {
		return fmt.Errorf("manager: %w", err)
	}
	if err := mgr.AddHealthzCheck("healthz", func(*http.Request) error { return nil }); err != nil {
		return err
	}
	// Ready once this node's Node object is in the cache.
	if err := mgr.AddReadyzCheck("node", func(r *http.Request) error {
		var n corev1.Node
		if err := mgr.GetCache().Get(r.Context(), client.ObjectKey{Name: nodeName}, &n); err != nil {
			return fmt.Errorf("node %s: %w", nodeName, err)
		}
		return nil
	}); err != nil {
		return err
	}
	ctx := ctrl.SetupSignalHandler()
	if err := mgr.Add(nodeLogger{mgr: mgr, name: nodeName}); err != nil {
		return err
	}
	return mgr.Start(ctx)
}

// nodeLogger reports this node's pod CIDRs once the cache has the Node, so an
// operator sees from the agent's log that it found its node.
type nodeLogger struct {
	mgr  ctrl.Manager
	name string
}

func (n nodeLogger) Start(ctx context.Context) error {
	if !n.mgr.GetCache().WaitForCacheSync(ctx) {
		return nil
	}
	var node corev1.Node
	if err := n.mgr.GetCache().Get(ctx, client.ObjectKey{Name: n.name}, &node); err != nil {
		return fmt.Errorf("node %s: %w (is --node-name right?)", n.name, err)
	}
	ctrl.Log.WithName("agent").Info("found node", "node", n.name, "podCIDRs", node.Spec.PodCIDRs)
	<-ctx.Done()
	return nil
}
