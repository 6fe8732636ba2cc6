package kube

import (
	"context"
	"net/netip"
	"strings"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/types"
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
	// cache holds each Service's part of the state, computed again only
	// when the Service or one of its EndpointSlices changed.
	cache map[types.NamespacedName]cachedService
}

// cachedService is a Service's ports and endpoints, with the resource
// versions they were computed from.
type cachedService struct {
	versions string
	ports    []proxy.ServicePort
	eps      map[proxy.PortKey][]proxy.Endpoint
}

// NewRunner returns a runner; call Trigger from watches.
func NewRunner(node string, reader client.Reader, syncer *proxy.Syncer, health *proxy.HealthServer, resync time.Duration, log logr.Logger) *Runner {
	return &Runner{Node: node, Reader: reader, Syncer: syncer, Health: health, Resync: resync, Log: log, loop: syncloop.New(),
		cache: map[types.NamespacedName]cachedService{}}
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
	st := proxy.State{Endpoints: make(map[proxy.PortKey][]proxy.Endpoint, len(svcs.Items)), ClusterCIDRs: cluster, NodePortCIDRs: r.NodePortCIDRs}
	bySvc := SlicesByService(slices.Items)
	seen := make(map[types.NamespacedName]bool, len(svcs.Items))
	var versions strings.Builder
	for i := range svcs.Items {
		svc := &svcs.Items[i]
		k := types.NamespacedName{Namespace: svc.Namespace, Name: svc.Name}
		seen[k] = true
		versions.Reset()
		versions.WriteString(svc.ResourceVersion)
		for _, sl := range bySvc[k] {
			versions.WriteByte(' ')
			versions.WriteString(sl.ResourceVersion)
		}
		c, ok := r.cache[k]
		if !ok || c.versions != versions.String() {
			c.versions = versions.String()
			c.ports, c.eps = ServicePorts(r.Node, svc, bySvc[k])
			r.cache[k] = c
		}
		st.Services = append(st.Services, c.ports...)
		for pk, eps := range c.eps {
			st.Endpoints[pk] = eps
		}
	}
	for k := range r.cache {
		if !seen[k] {
			delete(r.cache, k)
		}
	}
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
