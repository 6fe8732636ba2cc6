// Command berth-controller runs Berth's cluster-wide controllers under one
// leader-elected manager. The reconcilers (LB address management, Gateway and
// Ingress translation, the xDS server) register with it in run.
package main

import (
	"flag"
	"fmt"
	"os"
	"strings"

	ctrl "sigs.k8s.io/controller-runtime"
	crcache "sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
	gwv1b1 "sigs.k8s.io/gateway-api/apis/v1beta1"

	berthv1alpha1 "github.com/berthnet/berth/api/v1alpha1"
	"github.com/berthnet/berth/controllers"
	"github.com/berthnet/berth/internal/daemon"
	"github.com/berthnet/berth/xds/provision"
)

// The controller's own needs; each reconciler declares its own next to its code.
// Leader election holds a Lease in the controller's namespace, and every
// component records Events.
//
// +kubebuilder:rbac:groups=coordination.k8s.io,namespace=berth-system,resources=leases,verbs=get;list;watch;create;update;patch
// +kubebuilder:rbac:groups="",resources=events,verbs=create;patch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

func main() { daemon.Main("berth-controller", run) }

func run() error {
	var (
		opts          daemon.Options
		leaderElect   bool
		leaderElectNS string
		lb            controllers.LBIPAMOptions
		serviceCIDRs  string
		clusterCIDRs  string
		gateway       bool
		gw            controllers.GatewayOptions
		xdsNames      string
	)
	opts.Bind(flag.CommandLine, ":9090", ":9091")
	flag.BoolVar(&leaderElect, "leader-elect", true, "run only while holding the leader lease, so replicas do not fight")
	flag.StringVar(&leaderElectNS, "leader-election-namespace", "", "namespace of the leader lease (default: the pod's own)")
	flag.BoolVar(&lb.ServeUnclassed, "serve-unclassed-services", true, "also give addresses to LoadBalancer Services with no loadBalancerClass (as the cluster's default load balancer)")
	flag.StringVar(&serviceCIDRs, "service-cidrs", "", "comma-separated service CIDRs never handed out, besides the cluster's ServiceCIDR objects")
	flag.StringVar(&clusterCIDRs, "cluster-cidrs", "", "comma-separated pod CIDRs never handed out, besides each Node's podCIDRs")
	flag.BoolVar(&gateway, "gateway", true, "translate Gateway API and Ingress resources, serve them over xDS and provision an Envoy fleet per Gateway")
	flag.StringVar(&gw.Namespace, "namespace", envOr("POD_NAMESPACE", "berth-system"), "the controller's namespace: the xDS CA Secret and every Envoy fleet live there")
	flag.StringVar(&gw.PodName, "pod-name", os.Getenv("POD_NAME"), "the controller's own pod, labelled "+controllers.LabelXDSLeader+" while it serves xDS (the xDS Service selects it)")
	flag.StringVar(&gw.XDSBind, "xds-bind-address", ":18000", "where the xDS server listens (mutual TLS)")
	flag.StringVar(&gw.XDSAddress, "xds-address", "berth-xds.berth-system.svc:18000", "host:port the Envoys dial for xDS (the controller's xDS Service)")
	flag.StringVar(&xdsNames, "xds-server-names", "", "comma-separated DNS names and IPs for the xDS server certificate (default: the --xds-address host and its Service forms)")
	xdsLimits := xdsLimitFlags(flag.CommandLine)
	flag.StringVar(&gw.Envoy.Image, "envoy-image", provision.DefaultImage, "Envoy image of the provisioned fleets")
	flag.Var(replicasFlag{&gw.Envoy.Replicas}, "envoy-replicas", "Envoy replicas per Gateway, at least 1 (default 2)")
	flag.Parse()
	lb.ServiceCIDRs = splitList(serviceCIDRs)
	lb.ClusterCIDRs = splitList(clusterCIDRs)
	lb.FleetNamespace = gw.Namespace
	if _, done := opts.Start("berth-controller", os.Stdout); done {
		return nil
	}
	var cacheOpts crcache.Options
	if gateway {
		cacheOpts.ByObject = controllers.GatewayCacheByObject(gw.Namespace)
		gw.ServerNames = serverNames(gw.XDSAddress, splitList(xdsNames))
		gw.Bootstrap = bootstrapFor(gw.XDSAddress)
		gw.XDSLimits = *xdsLimits
	}
	mgr, err := opts.NewManager(ctrl.Options{
		Cache:                   cacheOpts,
		LeaderElection:          leaderElect,
		LeaderElectionID:        "berth-controller.berth.dev",
		LeaderElectionNamespace: leaderElectNS,
		// Step down cleanly on SIGTERM so a new leader takes over at once.
		LeaderElectionReleaseOnCancel: true,
	}, berthv1alpha1.AddToScheme, gwv1.Install, gwv1b1.Install)
	if err != nil {
		return err
	}
	if err := controllers.SetupLBIPAM(mgr, lb, ctrlmetrics.Registry); err != nil {
		return fmt.Errorf("load-balancer address management: %w", err)
	}
	if err := controllers.SetupL2AnnouncementStatus(mgr); err != nil {
		return fmt.Errorf("L2Announcement status: %w", err)
	}
	if gateway {
		installed, err := controllers.GatewayAPIInstalled(mgr)
		switch {
		case err != nil:
			return fmt.Errorf("gateway and ingress: looking for the Gateway API CRDs: %w", err)
		case !installed:
			// A load-balancer-only install need not carry them: say what
			// is off and how to turn it on, and go on.
			ctrl.Log.WithName("berth-controller").Error(nil, "the Gateway API CRDs (v1 GatewayClass, Gateway, HTTPRoute, GRPCRoute, v1beta1 ReferenceGrant) are not installed: Gateway and Ingress support is off. Install them (the chart's crds/ or config/crd/gateway-api) and restart berth-controller, or run with --gateway=false to silence this")
		default:
			if err := controllers.SetupGateway(mgr, gw, ctrlmetrics.Registry); err != nil {
				return fmt.Errorf("gateway and ingress: %w", err)
			}
		}
	}
	if err := mgr.AddReadyzCheck("readyz", healthz.Ping); err != nil {
		return err
	}
	return mgr.Start(ctrl.SetupSignalHandler())
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}
