package podnet

import (
	"context"
	"fmt"
	"net/netip"
	"path/filepath"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/berthnet/berth/cni"
	"github.com/berthnet/berth/internal/syncloop"
	"github.com/berthnet/berth/internal/syncreport"
)

// AgentOptions configure the pod network on one node.
type AgentOptions struct {
	NodeName string
	Mode     Mode
	// MTU overrides the derived MTU when not 0.
	MTU int
	// ConfDir and BinDir are the runtime's CNI folders; PluginSource is the
	// berth-cni binary to install; DataDir is the plugin's address store.
	ConfDir, BinDir, PluginSource, DataDir string
	// Network is the CNI network name.
	Network string
	// Resync is how often the node's state is re-applied to repair drift.
	Resync time.Duration
}

// Agent keeps the node's pod network in line with the cluster's Nodes.
type Agent struct {
	opts    AgentOptions
	reader  client.Reader
	applier *Applier
	log     logr.Logger
	loop    *syncloop.Loop
	report  *syncreport.Reporter

	syncs  *prometheus.CounterVec
	routes prometheus.Gauge
}

// NewAgent builds the agent; reader must see every Node.
func NewAgent(opts AgentOptions, reader client.Reader, recorder events.EventRecorder, log logr.Logger) (*Agent, error) {
	if err := ValidateMTU(opts.MTU); err != nil {
		return nil, err
	}
	applier, err := NewApplier()
	if err != nil {
		return nil, err
	}
	return &Agent{
		opts: opts, reader: reader, applier: applier, log: log,
		loop:   syncloop.New(),
		report: syncreport.New("PodNetwork", opts.NodeName, fmt.Sprintf("pod network in place (%s mode)", opts.Mode), reader, recorder, log),
		syncs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "berth_agent_podnet_syncs_total", Help: "Pod network syncs of this node, by result.",
		}, []string{"result"}),
		routes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "berth_agent_podnet_routes", Help: "Routes to other nodes' pod ranges on this node.",
		}),
	}, nil
}

// Collectors lists the agent's metrics for registration.
func (a *Agent) Collectors() []prometheus.Collector { return []prometheus.Collector{a.syncs, a.routes} }

// Trigger asks for a sync soon; Node watches call it.
func (a *Agent) Trigger() { a.loop.Trigger() }

// Ready reports an error until the node's pod network has been applied,
// and while its last sync failed.
func (a *Agent) Ready() error { return a.report.Ready() }

// Start syncs on every trigger and every resync period until ctx ends.
func (a *Agent) Start(ctx context.Context) error {
	return a.loop.Run(ctx, a.opts.Resync, 0, func(ctx context.Context) error {
		err := a.sync(ctx)
		result := "ok"
		if err != nil {
			result = "error"
		}
		a.syncs.WithLabelValues(result).Inc()
		a.report.Report(ctx, err)
		return err
	}, func(error) {})
}

func (a *Agent) sync(ctx context.Context) error {
	var nodes corev1.NodeList
	if err := a.reader.List(ctx, &nodes); err != nil {
		return fmt.Errorf("list nodes: %w", err)
	}
	var self *Node
	peers := make([]Node, 0, len(nodes.Items))
	for i := range nodes.Items {
		n := toNode(&nodes.Items[i])
		if n.Name == a.opts.NodeName {
			self = &n
		}
		peers = append(peers, n)
	}
	if self == nil {
		return fmt.Errorf("node %s not found (is --node-name right?)", a.opts.NodeName)
	}
	if !self.InternalIP.IsValid() {
		return fmt.Errorf("node %s has no InternalIP", a.opts.NodeName)
	}
	up, err := FindUplink(self.InternalIP)
	if err != nil {
		return err
	}
	st, err := Desired(*self, peers, a.opts.Mode, up, a.opts.MTU)
	if err != nil {
		return err
	}
	if err := a.applier.Apply(ctx, st, up); err != nil {
		return err
	}
	a.routes.Set(float64(len(st.Routes)))
	// The plugin and its config go in last: STATUS turns ready only when
	// the bridge they point at exists.
	if _, err := cni.InstallPlugin(a.opts.PluginSource, a.opts.BinDir); err != nil {
		return fmt.Errorf("install berth-cni into %s: %w", a.opts.BinDir, err)
	}
	conf := cni.NetConf{Bridge: Bridge, MTU: st.MTU, DataDir: a.opts.DataDir}
	for _, p := range st.PodCIDRs {
		conf.PodCIDRs = append(conf.PodCIDRs, p.String())
	}
	data, err := cni.Conflist(a.opts.Network, conf)
	if err != nil {
		return err
	}
	changed, err := cni.WriteAtomic(filepath.Join(a.opts.ConfDir, cni.ConflistName), data, 0o644)
	if err != nil {
		return fmt.Errorf("write CNI config: %w", err)
	}
	if changed {
		a.log.Info("wrote CNI config", "path", filepath.Join(a.opts.ConfDir, cni.ConflistName), "podCIDRs", conf.PodCIDRs, "mtu", st.MTU, "mode", a.opts.Mode)
	}
	return nil
}

func toNode(n *corev1.Node) Node {
	out := Node{Name: n.Name}
	var v4, v6 netip.Addr
	for _, a := range n.Status.Addresses {
		if a.Type != corev1.NodeInternalIP {
			continue
		}
		ip, err := netip.ParseAddr(a.Address)
		if err != nil {
			continue
		}
		ip = ip.Unmap()
		switch {
		case ip.Is4() && !v4.IsValid():
			v4 = ip
		case ip.Is6() && !v6.IsValid():
			v6 = ip
		}
	}
	out.InternalIP = v4
	if !v4.IsValid() {
		out.InternalIP = v6
	} else {
		out.InternalIP6 = v6
	}
	cidrs := n.Spec.PodCIDRs
	if len(cidrs) == 0 && n.Spec.PodCIDR != "" {
		cidrs = []string{n.Spec.PodCIDR}
	}
	for _, c := range cidrs {
		if p, err := netip.ParsePrefix(c); err == nil {
			out.PodCIDRs = append(out.PodCIDRs, p.Masked())
		}
	}
	return out
}
