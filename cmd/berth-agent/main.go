// Command berth-agent is Berth's per-node agent (a DaemonSet with host
// networking). It runs the node's pod network (bridge, routes to other
// nodes, masquerade, the CNI plugin and its config), the service proxy,
// NetworkPolicy, and the layer-2 and BGP announcers, each behind its flag,
// and serves health and metrics.
package main

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/cache"
	ctrl "sigs.k8s.io/controller-runtime"
	crcache "sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/berthnet/berth/api/v1alpha1"
	"github.com/berthnet/berth/cni"
	"github.com/berthnet/berth/cni/podnet"
	"github.com/berthnet/berth/internal/daemon"
	netpolkube "github.com/berthnet/berth/netpol/kube"
	"github.com/berthnet/berth/proxy"
	proxykube "github.com/berthnet/berth/proxy/kube"
)

// The agent reads every Node (routes go to each node's podCIDRs) and records
// Events about its own.
//
// +kubebuilder:rbac:groups="",resources=nodes,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=services,verbs=get;list;watch
// +kubebuilder:rbac:groups=discovery.k8s.io,resources=endpointslices,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=services/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=berth.dev,resources=ippools;l2announcements,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=events,verbs=create;patch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch
// +kubebuilder:rbac:groups=networking.k8s.io,resources=networkpolicies,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=pods;namespaces,verbs=get;list;watch

func main() {
	// `berth-agent init`: the privileged init container (init.go).
	if len(os.Args) > 1 && os.Args[1] == "init" {
		daemon.Main("berth-agent init", func() error { return runInit(os.Args[2:], os.Stdout) })
		return
	}
	daemon.Main("berth-agent", run)
}

func run() error {
	// A node agent runs on every node: once its first sync is done it
	// trades some CPU for memory (its steady state allocates little),
	// unless the operator chose (GOGC or GOMEMLIMIT in its environment).
	leanGC := os.Getenv("GOGC") == "" && os.Getenv("GOMEMLIMIT") == ""
	var (
		opts       daemon.Options
		nodeName   string
		podNetwork bool
		mode       string
		pn         podnet.AgentOptions
		svcProxy   bool
		proxySync  time.Duration
		nodePorts  []netip.Prefix
		externalIP []netip.Prefix
		l2         l2Options
		bgpOpts    bgpOptions
		namespace  string
		netPol     bool
		netPolSync time.Duration
		serve      serveOptions
		podName    string
	)
	self, _ := os.Executable()
	opts.Bind(flag.CommandLine, ":9190", ":9191")
	serve.bind(flag.CommandLine)
	flag.StringVar(&nodeName, "node-name", os.Getenv("NODE_NAME"), "this node's name (default $NODE_NAME, set from the downward API)")
	flag.BoolVar(&podNetwork, "pod-network", true, "run the pod network on this node (off when the cluster keeps another CNI)")
	flag.StringVar(&mode, "pod-network-mode", string(podnet.Auto), "how pods reach other nodes: routed, vxlan, auto (routed on the same subnet, VXLAN otherwise), or bgp (pod ranges advertised to and learned from the BGPPeers)")
	flag.IntVar(&pn.MTU, "mtu", 0, "pod MTU; 0 derives it from the uplink and the mode")
	flag.StringVar(&pn.ConfDir, "cni-conf-dir", "/etc/cni/net.d", "where the runtime reads CNI configs")
	flag.StringVar(&pn.BinDir, "cni-bin-dir", "/opt/cni/bin", "where the runtime finds CNI plugins")
	flag.StringVar(&pn.PluginSource, "cni-plugin-source", filepath.Join(filepath.Dir(self), cni.PluginType), "the berth-cni binary to install")
	flag.StringVar(&pn.DataDir, "cni-data-dir", cni.DefaultDataDir, "the plugin's address store")
	flag.StringVar(&pn.Network, "cni-network", "berth", "the CNI network name")
	flag.DurationVar(&pn.Resync, "resync", 10*time.Second, "how often the node's pod network is re-applied to repair drift")
	flag.BoolVar(&svcProxy, "service-proxy", true, "run the nftables service proxy in place of kube-proxy (off when the cluster keeps kube-proxy)")
	flag.Func("nodeport-addresses", "CIDRs of the node's addresses that answer node ports, comma-separated (default: every address of the node)", func(v string) error {
		for _, c := range strings.Split(v, ",") {
			p, err := netip.ParsePrefix(strings.TrimSpace(c))
			if err != nil {
				return fmt.Errorf("%q is not a CIDR (like 192.0.2.0/24)", c)
			}
			nodePorts = append(nodePorts, p.Masked())
		}
		return nil
	})
	flag.Func("external-ip-cidrs", "CIDRs where Services' spec.externalIPs may be, comma-separated (0.0.0.0/0,::/0 for all, as kube-proxy); default none: any Service author can write any address there and take its traffic (CVE-2020-8554)", func(v string) error {
		for _, c := range strings.Split(v, ",") {
			if c = strings.TrimSpace(c); c == "" {
				continue
			}
			p, err := netip.ParsePrefix(c)
			if err != nil {
				return fmt.Errorf("%q is not a CIDR (like 192.0.2.0/24)", c)
			}
			externalIP = append(externalIP, p.Masked())
		}
		return nil
	})
	flag.DurationVar(&proxySync, "proxy-resync", 30*time.Second, "how often the service proxy re-syncs without a change")
	flag.BoolVar(&netPol, "network-policy", true, "enforce NetworkPolicy on this node's pods (nftables table inet berth-netpol)")
	flag.DurationVar(&netPolSync, "network-policy-resync", 30*time.Second, "how often NetworkPolicy re-syncs without a change")
	l2.bind(flag.CommandLine)
	bgpOpts.bind(flag.CommandLine)
	flag.StringVar(&podName, "pod-name", os.Getenv("POD_NAME"), "this agent's pod (default $POD_NAME): its DaemonSet, read from the pod, tells an uninstall (remove this node's state) from a restart (keep it) when the agent stops; empty: always keep")
	flag.StringVar(&namespace, "namespace", envOr("POD_NAMESPACE", "berth-system"), "the agents' namespace, where BGP password Secrets are read (default $POD_NAMESPACE)")
	flag.Parse()
	if _, done := opts.Start("berth-agent", os.Stdout, "node", nodeName); done {
		return nil
	}
	if nodeName == "" {
		return fmt.Errorf("no node name: pass --node-name or set NODE_NAME (spec.nodeName through the downward API)")
	}
	if l2.enabled {
		if err := l2.check(); err != nil {
			return fmt.Errorf("layer-2 announcement: %w", err)
		}
	}
	pn.NodeName = nodeName
	var err error
	if pn.Mode, err = podnet.ParseMode(mode); err != nil {
		return err
	}
	metricsAddr := serve.apply(&opts)
	mgr, err := opts.NewManager(ctrl.Options{
		Cache: crcache.Options{ByObject: map[client.Object]crcache.ByObject{
			// Every pod of the cluster is cached for NetworkPolicy: only what it reads.
			&corev1.Pod{}: {Transform: netpolkube.TrimPod},
		}},
		// Secrets are never cached: the agents' Role names the few they
		// may read (resourceNames), which allows no list or watch of the
		// namespace, and they are read by name (bgp.go).
		Client: client.Options{Cache: &client.CacheOptions{DisableFor: []client.Object{&corev1.Secret{}}}},
	}, v1alpha1.AddToScheme)
	if err != nil {
		return err
	}
	uninstall, err := startUninstallCheck(mgr.GetConfig(), namespace, podName, nodeName, ctrl.Log.WithName("uninstall"))
	if err != nil {
		return err
	}
	if err := serve.addMetrics(mgr, metricsAddr); err != nil {
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
	if podNetwork {
		agent, err := podnet.NewAgent(pn, mgr.GetCache(), mgr.GetEventRecorder("berth-agent"), ctrl.Log.WithName("podnet"))
		if err != nil {
			return err
		}
		for _, c := range agent.Collectors() {
			if err := ctrlmetrics.Registry.Register(c); err != nil {
				return err
			}
		}
		if err := mgr.AddReadyzCheck("podnet", func(*http.Request) error { return agent.Ready() }); err != nil {
			return err
		}
		inf, err := mgr.GetCache().GetInformer(ctx, &corev1.Node{})
		if err != nil {
			return err
		}
		trigger := func(any) { agent.Trigger() }
		if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc: trigger, DeleteFunc: trigger,
			UpdateFunc: func(_, _ any) { agent.Trigger() },
		}); err != nil {
			return err
		}
		if err := mgr.Add(afterSync{mgr: mgr, run: agent.Start}); err != nil {
			return err
		}
	}
	if svcProxy {
		be, err := proxy.NewNetlink()
		if err != nil {
			return fmt.Errorf("service proxy: %w", err)
		}
		syncer := proxy.NewSyncer(be, proxy.KernelConntrack{})
		for _, c := range syncer.Collectors() {
			if err := ctrlmetrics.Registry.Register(c); err != nil {
				return err
			}
		}
		health := proxy.NewHealthServer("", syncer.Healthy)
		for _, c := range health.Collectors() {
			if err := ctrlmetrics.Registry.Register(c); err != nil {
				return err
			}
		}
		if err := mgr.AddReadyzCheck("proxy", func(*http.Request) error {
			if !syncer.Healthy() {
				return fmt.Errorf("service proxy rules not in place (first sync pending or last sync failed)")
			}
			return nil
		}); err != nil {
			return err
		}
		runner := proxykube.NewRunner(nodeName, mgr.GetCache(), syncer, health, proxySync, ctrl.Log.WithName("proxy"))
		runner.NodePortCIDRs = nodePorts
		runner.ExternalIPCIDRs = externalIP
		for _, c := range runner.Collectors() {
			if err := ctrlmetrics.Registry.Register(c); err != nil {
				return err
			}
		}
		runner.Recorder = mgr.GetEventRecorder("berth-agent")
		if leanGC {
			runner.AfterFirstSync = func() {
				// The start-up's garbage (the full lists, the first
				// transactions) goes back to the system now, and the
				// heap stays within 1.25x of what is live.
				debug.SetGCPercent(25)
				debug.FreeOSMemory()
			}
		}
		if err := proxykube.IndexSlices(ctx, mgr.GetFieldIndexer()); err != nil {
			return err
		}
		if err := runner.Watch(ctx, mgr.GetCache()); err != nil {
			return err
		}
		if err := mgr.Add(afterSync{mgr: mgr, run: runner.Start}); err != nil {
			return err
		}
	}
	if netPol {
		if err := setupNetworkPolicy(ctx, mgr, nodeName, netPolSync); err != nil {
			return fmt.Errorf("NetworkPolicy: %w", err)
		}
	}
	if l2.enabled {
		if err := l2.setup(ctx, mgr, nodeName); err != nil {
			return fmt.Errorf("layer-2 announcement: %w", err)
		}
	}
	if podNetwork && pn.Mode == podnet.BGP && !bgpOpts.enabled {
		return fmt.Errorf("--pod-network-mode=bgp needs the BGP speaker: drop --bgp=false")
	}
	if bgpOpts.enabled {
		if err := bgpOpts.setup(ctx, mgr, nodeName, namespace, l2.serveUnclassed, podNetwork && pn.Mode == podnet.BGP); err != nil {
			return fmt.Errorf("BGP: %w", err)
		}
	}
	if err := mgr.Start(ctx); err != nil {
		return err
	}
	// Stopped (SIGTERM): uninstall or restart (uninstall.go).
	return uninstall.onStop(pn)
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// afterSync starts fn once the cache has every Node, so the first sync does
// not see a partial cluster and remove routes to nodes not yet listed.
type afterSync struct {
	mgr ctrl.Manager
	run func(context.Context) error
}

func (a afterSync) Start(ctx context.Context) error {
	if !a.mgr.GetCache().WaitForCacheSync(ctx) {
		return nil
	}
	return a.run(ctx)
}
