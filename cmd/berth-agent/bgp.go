package main

import (
	"context"
	"flag"
	"log/slog"
	"net/http"
	"os"

	ctrl "sigs.k8s.io/controller-runtime"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/berthnet/berth/bgp"
	bgpkube "github.com/berthnet/berth/bgp/kube"
)

// The BGP speaker reads the peers and announcements and writes its sessions
// into the peers' status. It reads the ServiceCIDRs (and the Nodes' and
// IPPools' ranges) to refuse a peer address inside one. It reads the
// peers' password Secrets in its own namespace by name: no marker grants
// that, since the chart's Role (templates/agent-secrets.yaml) names each
// Secret the agents may read (resourceNames), so that they cannot read
// the xDS CA's key beside them.
//
// +kubebuilder:rbac:groups=berth.dev,resources=bgppeers;bgpannouncements,verbs=get;list;watch
// +kubebuilder:rbac:groups=berth.dev,resources=bgppeers/status,verbs=get;patch;update
// +kubebuilder:rbac:groups=networking.k8s.io,resources=servicecidrs,verbs=get;list;watch

// bgpOptions are the BGP speaker's flags.
type bgpOptions struct {
	enabled bool
}

func (o *bgpOptions) bind(fs *flag.FlagSet) {
	fs.BoolVar(&o.enabled, "bgp", true, "advertise LoadBalancer addresses to the BGPPeers that select this node, as BGPAnnouncements say")
}

// setup adds the BGP speaker and its runner: their metrics, the readiness
// check ("bgp" fails until the first sync succeeded and whenever the last
// one failed), Node events on failure and recovery, and the watches.
func (o *bgpOptions) setup(ctx context.Context, mgr ctrl.Manager, node, namespace string, serveUnclassed, podCIDRs bool) error {
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})).With("logger", "gobgp")
	speaker := bgp.NewSpeaker(log)
	runner := bgpkube.NewRunner(node, namespace, mgr.GetCache(), speaker, ctrl.Log.WithName("bgp"))
	runner.Secrets = mgr.GetAPIReader() // by name, never cached
	runner.ServeUnclassed = serveUnclassed
	runner.Status = &bgpkube.StatusWriter{Node: node, Client: mgr.GetClient(), Log: ctrl.Log.WithName("bgpstatus")}
	runner.Recorder = mgr.GetEventRecorder("berth-agent")
	for _, c := range runner.Collectors() {
		if err := ctrlmetrics.Registry.Register(c); err != nil {
			return err
		}
	}
	if err := mgr.AddReadyzCheck("bgp", func(*http.Request) error { return runner.Err() }); err != nil {
		return err
	}
	if podCIDRs {
		// Pod network mode bgp: this node's pod ranges go out, the
		// others' come in as kernel routes.
		runner.PodCIDRs, runner.Routes = true, &bgp.Routes{}
		speaker.LearnInto(runner.Routes)
		if err := mgr.Add(afterSync{mgr: mgr, run: runner.Routes.Run}); err != nil {
			return err
		}
	}
	if err := runner.Watch(ctx, mgr.GetCache()); err != nil {
		return err
	}
	if err := mgr.Add(afterSync{mgr: mgr, run: speaker.Serve}); err != nil {
		return err
	}
	return mgr.Add(afterSync{mgr: mgr, run: runner.Start})
}
