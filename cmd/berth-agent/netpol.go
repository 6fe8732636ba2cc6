package main

import (
	"context"
	"net/http"
	"time"

	ctrl "sigs.k8s.io/controller-runtime"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/berthnet/berth/internal/nftrules"
	"github.com/berthnet/berth/netpol"
	netpolkube "github.com/berthnet/berth/netpol/kube"
)

// setupNetworkPolicy adds the NetworkPolicy runner: its metrics, its
// readiness check ("netpol" fails until the first sync succeeded and
// whenever the last one failed) and its watches.
func setupNetworkPolicy(ctx context.Context, mgr ctrl.Manager, nodeName string, resync time.Duration) error {
	nft, err := nftrules.NewNetlink(netpol.Table)
	if err != nil {
		return err
	}
	syncer := netpol.NewSyncer(nft)
	for _, c := range syncer.Collectors() {
		if err := ctrlmetrics.Registry.Register(c); err != nil {
			return err
		}
	}
	if err := mgr.AddReadyzCheck("netpol", func(*http.Request) error { return syncer.Err() }); err != nil {
		return err
	}
	runner := netpolkube.NewRunner(nodeName, mgr.GetCache(), syncer, resync, ctrl.Log.WithName("netpol"))
	runner.Prepare = netpol.EnableBridgeFiltering
	runner.Recorder = mgr.GetEventRecorder("berth-agent")
	if err := runner.Watch(ctx, mgr.GetCache()); err != nil {
		return err
	}
	return mgr.Add(afterSync{mgr: mgr, run: runner.Start})
}
