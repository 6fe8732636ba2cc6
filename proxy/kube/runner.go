package kube

import (
	"context"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/berthnet/berth/internal/syncloop"
	"github.com/berthnet/berth/internal/syncreport"
	"github.com/berthnet/berth/proxy"
)

// SliceIndex is the cache index of EndpointSlices by the Service they
// belong to ("namespace/name"); IndexSlices registers it.
const SliceIndex = "berth.dev/service"

// IndexSlices registers SliceIndex with a cache's field indexer (before
// the cache starts).
func IndexSlices(ctx context.Context, idx client.FieldIndexer) error {
	return idx.IndexField(ctx, &discoveryv1.EndpointSlice{}, SliceIndex, func(o client.Object) []string {
		if name := o.GetLabels()[discoveryv1.LabelServiceName]; name != "" {
			return []string{o.GetNamespace() + "/" + name}
		}
		return nil
	})
}

// Runner keeps the node's service proxy in sync with the cluster. Watches
// tell it which Services changed (ServiceChanged, NodesChanged); a sync
// then reads and sends only those, and every Resync it reads everything
// (which also repairs any change a watch could have missed).
type Runner struct {
	Node   string
	Reader client.Reader
	Syncer *proxy.Syncer
	// Health answers the health-check node ports; nil leaves them closed.
	Health *proxy.HealthServer
	Resync time.Duration
	// NodePortCIDRs narrow the node addresses node ports answer on.
	NodePortCIDRs []netip.Prefix
	// ExternalIPCIDRs are where Services' spec.externalIPs may be: the
	// others are not served (none, when empty). See ServicePorts.
	ExternalIPCIDRs []netip.Prefix
	Log             logr.Logger
	// AfterFirstSync, if set, runs once the first full sync succeeded.
	AfterFirstSync func()
	// Recorder, if set, gets an event on this Node when syncs start
	// failing (ServiceProxyFailed, with the error) and when they succeed
	// again (ServiceProxyReady).
	Recorder events.EventRecorder
	loop     *syncloop.Loop

	mu         sync.Mutex
	dirty      map[types.NamespacedName]bool
	nodesDirty bool

	// cache holds each Service's part of the state, computed again only
	// when the Service or one of its EndpointSlices changed.
	cache    map[types.NamespacedName]cachedService
	cluster  []netip.Prefix
	health   map[types.NamespacedName][]proxy.HealthCheck
	lastFull time.Time

	refusedExternal prometheus.Gauge
}

// cachedService is a Service's ports and endpoints, with the resource
// versions they were computed from.
type cachedService struct {
	versions string
	ports    []proxy.ServicePort
	eps      map[proxy.PortKey][]proxy.Endpoint
	// refused counts its externalIPs outside ExternalIPCIDRs.
	refused int
}

// NewRunner returns a runner; call ServiceChanged, NodesChanged or Trigger
// from watches.
func NewRunner(node string, reader client.Reader, syncer *proxy.Syncer, health *proxy.HealthServer, resync time.Duration, log logr.Logger) *Runner {
	return &Runner{Node: node, Reader: reader, Syncer: syncer, Health: health, Resync: resync, Log: log, loop: syncloop.New(),
		dirty: map[types.NamespacedName]bool{}, cache: map[types.NamespacedName]cachedService{}, health: map[types.NamespacedName][]proxy.HealthCheck{},
		refusedExternal: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "berth_agent_proxy_external_ips_refused",
			Help: "Addresses in Services' spec.externalIPs this node does not serve: outside --external-ip-cidrs (none are served when it is empty).",
		})}
}

// Trigger asks for a sync soon.
func (r *Runner) Trigger() { r.loop.Trigger() }

// ServiceChanged notes that a Service, or one of its EndpointSlices,
// changed, and asks for a sync.
func (r *Runner) ServiceChanged(namespace, name string) {
	r.mu.Lock()
	r.dirty[types.NamespacedName{Namespace: namespace, Name: name}] = true
	r.mu.Unlock()
	r.loop.Trigger()
}

// NodesChanged notes that the Nodes (and so the pod ranges) may have
// changed, and asks for a sync.
func (r *Runner) NodesChanged() {
	r.mu.Lock()
	r.nodesDirty = true
	r.mu.Unlock()
	r.loop.Trigger()
}

// Start syncs on every trigger and every resync period until ctx ends; a
// failed sync is retried after a second, as a full rebuild.
func (r *Runner) Start(ctx context.Context) error {
	report := syncreport.New("ServiceProxy", r.Node, "service proxy rules in place", r.Reader, r.Recorder, r.Log)
	reported := func(ctx context.Context) error {
		err := r.sync(ctx)
		report.Report(ctx, err)
		return err
	}
	return r.loop.Run(ctx, r.Resync, time.Second, reported, func(err error) {
		r.Log.Error(err, "service proxy sync failed; retrying in a second with a full rebuild")
	})
}

func (r *Runner) sync(ctx context.Context) error {
	r.mu.Lock()
	dirty, nodes := r.dirty, r.nodesDirty
	r.dirty, r.nodesDirty = map[types.NamespacedName]bool{}, false
	r.mu.Unlock()
	if !r.Syncer.Synced() || r.lastFull.IsZero() || time.Since(r.lastFull) >= r.Resync {
		return r.full(ctx)
	}
	if len(dirty) == 0 && !nodes {
		return nil
	}
	if nodes {
		if err := r.listNodes(ctx); err != nil {
			return err
		}
	}
	d := proxy.Delta{Endpoints: map[proxy.PortKey][]proxy.Endpoint{}, ClusterCIDRs: r.cluster, NodePortCIDRs: r.NodePortCIDRs}
	for k := range dirty {
		var svc corev1.Service
		err := r.Reader.Get(ctx, k, &svc)
		if err != nil && !apierrors.IsNotFound(err) {
			return err
		}
		var next cachedService
		if err == nil {
			var slices discoveryv1.EndpointSliceList
			if err := r.Reader.List(ctx, &slices, client.InNamespace(k.Namespace), client.MatchingFields{SliceIndex: k.String()}, client.UnsafeDisableDeepCopy); err != nil {
				return err
			}
			ptrs := make([]*discoveryv1.EndpointSlice, len(slices.Items))
			for i := range slices.Items {
				ptrs[i] = &slices.Items[i]
			}
			next.versions = versions(&svc, ptrs)
			next.ports, next.eps = ServicePorts(r.Node, &svc, ptrs, r.ExternalIPCIDRs)
			next.refused = RefusedExternalIPs(&svc, r.ExternalIPCIDRs)
		}
		kept := map[proxy.PortKey]bool{}
		for _, sp := range next.ports {
			kept[sp.Key] = true
			d.Upsert = append(d.Upsert, sp)
			d.Endpoints[sp.Key] = next.eps[sp.Key]
		}
		for _, sp := range r.cache[k].ports {
			if !kept[sp.Key] {
				d.Remove = append(d.Remove, sp.Key)
			}
		}
		if next.ports == nil {
			delete(r.cache, k)
			delete(r.health, k)
		} else {
			r.cache[k] = next
			r.health[k] = proxy.HealthChecks(proxy.State{Services: next.ports, Endpoints: next.eps})
		}
	}
	return r.finish(r.Syncer.Update(ctx, d))
}

// Collectors lists the runner's metrics for registration.
func (r *Runner) Collectors() []prometheus.Collector {
	return []prometheus.Collector{r.refusedExternal}
}

// full reads every Service and sends the whole state (the syncer still
// applies only what differs from what it applied).
func (r *Runner) full(ctx context.Context) error {
	// The lists come from the informers' cache without copies: the
	// objects are only read.
	var svcs corev1.ServiceList
	if err := r.Reader.List(ctx, &svcs, client.UnsafeDisableDeepCopy); err != nil {
		return err
	}
	var slices discoveryv1.EndpointSliceList
	if err := r.Reader.List(ctx, &slices, client.UnsafeDisableDeepCopy); err != nil {
		return err
	}
	if err := r.listNodes(ctx); err != nil {
		return err
	}
	st := proxy.State{Endpoints: make(map[proxy.PortKey][]proxy.Endpoint, len(svcs.Items)), ClusterCIDRs: r.cluster, NodePortCIDRs: r.NodePortCIDRs}
	bySvc := SlicesByService(slices.Items)
	seen := make(map[types.NamespacedName]bool, len(svcs.Items))
	r.health = map[types.NamespacedName][]proxy.HealthCheck{}
	for i := range svcs.Items {
		svc := &svcs.Items[i]
		k := types.NamespacedName{Namespace: svc.Namespace, Name: svc.Name}
		seen[k] = true
		v := versions(svc, bySvc[k])
		c, ok := r.cache[k]
		if !ok || c.versions != v {
			c.versions = v
			c.ports, c.eps = ServicePorts(r.Node, svc, bySvc[k], r.ExternalIPCIDRs)
			c.refused = RefusedExternalIPs(svc, r.ExternalIPCIDRs)
			r.cache[k] = c
		}
		st.Services = append(st.Services, c.ports...)
		for pk, eps := range c.eps {
			st.Endpoints[pk] = eps
		}
		if hc := proxy.HealthChecks(proxy.State{Services: c.ports, Endpoints: c.eps}); len(hc) > 0 {
			r.health[k] = hc
		}
	}
	for k := range r.cache {
		if !seen[k] {
			delete(r.cache, k)
		}
	}
	err := r.Syncer.Sync(ctx, st)
	if err == nil {
		if r.lastFull.IsZero() && r.AfterFirstSync != nil {
			r.AfterFirstSync()
		}
		r.lastFull = time.Now()
	}
	return r.finish(err)
}

// finish updates the health-check node ports. Counts follow the cluster
// even when the rules could not be applied: the server then reports the
// proxy unhealthy. A port that cannot be opened is retried on the next
// sync.
func (r *Runner) finish(err error) error {
	refused := 0
	for _, c := range r.cache {
		refused += c.refused
	}
	r.refusedExternal.Set(float64(refused))
	if r.Health != nil {
		var all []proxy.HealthCheck
		for _, hc := range r.health {
			all = append(all, hc...)
		}
		if herr := r.Health.Sync(all); herr != nil {
			r.Log.Error(herr, "health-check node ports")
		}
	}
	return err
}

func (r *Runner) listNodes(ctx context.Context) error {
	var nodes corev1.NodeList
	if err := r.Reader.List(ctx, &nodes, client.UnsafeDisableDeepCopy); err != nil {
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
	r.cluster = cluster
	return nil
}

// versions identifies what a Service's part was computed from.
func versions(svc *corev1.Service, slices []*discoveryv1.EndpointSlice) string {
	var b strings.Builder
	b.WriteString(svc.ResourceVersion)
	for _, sl := range slices {
		b.WriteByte(' ')
		b.WriteString(sl.ResourceVersion)
	}
	return b.String()
}
