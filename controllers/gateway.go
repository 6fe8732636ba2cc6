package controllers

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"runtime/debug"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	ctrl "sigs.k8s.io/controller-runtime"
	crcache "sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
	gwv1b1 "sigs.k8s.io/gateway-api/apis/v1beta1"

	"github.com/berthnet/berth/internal/watch"
	"github.com/berthnet/berth/xds/pki"
	"github.com/berthnet/berth/xds/provision"
	"github.com/berthnet/berth/xds/server"
)

// What the Gateway and Ingress side of berth-controller reads and writes.
// Cluster-wide it reads: listeners and Ingresses name TLS Secrets in any
// namespace (the cache holds only kubernetes.io/tls Secrets), routes name
// Services and their EndpointSlices anywhere. It writes cluster-wide only
// the status of what it serves. Every Envoy fleet (ServiceAccount,
// bootstrap ConfigMap, client-certificate Secret, Deployment, Service)
// lives in the controller's own namespace (berth-system is the generator's
// placeholder; the chart puts the Role in the release's namespace), so its
// writes of those kinds are a Role there: it cannot create a pod, Secret
// or Service in a tenant's namespace.
//
// +kubebuilder:rbac:groups=gateway.networking.k8s.io,resources=gatewayclasses;gateways;httproutes;grpcroutes;referencegrants,verbs=get;list;watch
// +kubebuilder:rbac:groups=gateway.networking.k8s.io,resources=gatewayclasses/status;gateways/status;httproutes/status;grpcroutes/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=networking.k8s.io,resources=ingresses;ingressclasses,verbs=get;list;watch
// +kubebuilder:rbac:groups=networking.k8s.io,resources=ingresses/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=discovery.k8s.io,resources=endpointslices,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=namespaces,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch
// +kubebuilder:rbac:groups=apps,resources=deployments,verbs=get;list;watch
// +kubebuilder:rbac:groups="",namespace=berth-system,resources=secrets;configmaps;serviceaccounts;services,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=apps,namespace=berth-system,resources=deployments,verbs=get;list;watch;create;update;patch;delete
//
// Fleets of the model before this one run in their Gateway's namespace;
// the controller removes them once their replacement is ready
// (removeStaleFleets). Deleting is all it may do there, and only for this
// migration: a later release drops this rule.
//
// +kubebuilder:rbac:groups="",resources=secrets;configmaps;serviceaccounts;services,verbs=delete
// +kubebuilder:rbac:groups=apps,resources=deployments,verbs=delete

// GatewayOptions configure the Gateway API and Ingress side of the
// controller.
type GatewayOptions struct {
	// Namespace is the controller's own: the CA Secret and every Envoy
	// fleet live there.
	Namespace string
	// XDSBind is where the xDS server listens (":18000").
	XDSBind string
	// XDSAddress is the host:port the Envoys dial (the controller's xDS
	// Service).
	XDSAddress string
	// ServerNames go into the xDS server's certificate: the Service's DNS
	// names and any IPs Envoys (or berthctl) dial.
	ServerNames pki.ServerNames
	// Envoy is the image and replicas of every fleet.
	Envoy provision.Options
	// Bootstrap renders the Envoy bootstrap of a node group.
	Bootstrap func(group string) ([]byte, error)
	// PodName is the controller's own pod, labelled LabelXDSLeader while it
	// serves xDS; empty outside a pod (the lab).
	PodName string
	// KeepGC leaves the Go runtime's garbage collector as it is. By default
	// the engine tightens it once its first sync is done (see leanGC),
	// unless GOGC or GOMEMLIMIT is set in the environment.
	KeepGC bool
	// XDSLimits bound what the xDS server's clients can make it hold (see
	// docs/xds.md); zero fields take the server's defaults.
	XDSLimits server.Limits
}

// xdsCASecret is the Secret holding the xDS CA in the controller's namespace
// (type berth.dev/xds-ca; releases before kept it in berth-xds-ca, see
// xds_pki.go).
const xdsCASecret = "berth-xds-issuer"

// GatewayCacheByObject narrows the manager's cache for the Gateway side:
// only TLS Secrets, only the ConfigMaps and ServiceAccounts the controller
// provisions, in its namespace (the only one it may write them in), and
// only the Deployments it provisions (anywhere: the old model's fleets in
// Gateways' namespaces are found there and removed). Pass it as the
// manager's cache.Options.ByObject.
func GatewayCacheByObject(namespace string) map[client.Object]crcache.ByObject {
	ours := labels.SelectorFromSet(labels.Set{provision.LabelManagedBy: provision.ManagedBy})
	own := map[string]crcache.Config{namespace: {}}
	return map[client.Object]crcache.ByObject{
		&corev1.Secret{}:         {Field: fields.OneTermEqualSelector("type", string(corev1.SecretTypeTLS))},
		&corev1.ConfigMap{}:      {Label: ours, Namespaces: own},
		&corev1.ServiceAccount{}: {Label: ours, Namespaces: own},
		&appsv1.Deployment{}:     {Label: ours},
	}
}

// GatewayAPIInstalled reports whether the API server serves the Gateway
// API kinds Berth reads (its CRDs are installed), so the controller can
// run without them as a load-balancer controller alone.
func GatewayAPIInstalled(mgr ctrl.Manager) (bool, error) {
	v1 := schema.GroupVersion{Group: gwv1.GroupVersion.Group, Version: gwv1.GroupVersion.Version}
	v1beta1 := schema.GroupVersion{Group: gwv1b1.GroupVersion.Group, Version: gwv1b1.GroupVersion.Version}
	for _, gvk := range []schema.GroupVersionKind{
		v1.WithKind("GatewayClass"), v1.WithKind("Gateway"), v1.WithKind("HTTPRoute"), v1.WithKind("GRPCRoute"),
		v1beta1.WithKind("ReferenceGrant"),
	} {
		if _, err := mgr.GetRESTMapper().RESTMapping(gvk.GroupKind(), gvk.Version); err != nil {
			if meta.IsNoMatchError(err) {
				return false, nil
			}
			return false, err
		}
	}
	return true, nil
}

// SetupGateway registers Gateway API and Ingress translation, the xDS
// server and Envoy provisioning with the manager. They run on the leader
// only: one replica serves xDS and writes status, so what status says is
// what the Envoys were sent. The leader labels its pod LabelXDSLeader,
// which the xDS Service selects; every replica stays ready, so rollouts
// and disruption budgets work as usual.
func SetupGateway(mgr ctrl.Manager, opts GatewayOptions, reg prometheus.Registerer) error {
	if opts.XDSBind == "" {
		opts.XDSBind = ":18000"
	}
	if opts.Bootstrap == nil {
		return fmt.Errorf("gateway: no bootstrap renderer")
	}
	metrics, err := newGatewayMetrics(reg)
	if err != nil {
		return err
	}
	p := &xdsPKI{client: mgr.GetClient(), reader: mgr.GetAPIReader(), namespace: opts.Namespace, name: xdsCASecret, names: opts.ServerNames, now: time.Now}
	e := &gatewayEngine{
		client:   mgr.GetClient(),
		reader:   mgr.GetAPIReader(),
		opts:     opts,
		pki:      p,
		reg:      reg,
		metrics:  metrics,
		recorder: mgr.GetEventRecorder("berth-controller"),
		groups:   map[string]*groupState{},
		applied:  map[string]string{},

		ingressProblems: map[string]string{},
		addressProblems: map[string]string{},
		dirty:           map[string]bool{},
		lists:           newGatewayLists(),
	}
	if err := mgr.GetFieldIndexer().IndexField(context.Background(), &discoveryv1.EndpointSlice{}, sliceServiceIndex, func(o client.Object) []string {
		if n := o.GetLabels()[discoveryv1.LabelServiceName]; n != "" {
			return []string{o.GetNamespace() + "/" + n}
		}
		return nil
	}); err != nil {
		return err
	}
	// translate asks for a sync after an event of a kind, and for the
	// kind's list to be read again (-1: a kind translation does not list).
	translate := func(kind int) func(client.Object) {
		return func(client.Object) {
			if kind >= 0 {
				e.lists[kind].changed()
			}
			e.metrics.event()
			e.translate.Fire()
		}
	}
	// The engine writes the status of these kinds, and translation reads
	// none of it: an update of status alone (our own writes, mostly) is
	// no work, and taking it as work made every change cost two syncs.
	subs := []watch.Sub{
		{Object: &gwv1.GatewayClass{}, Func: translate(listClasses), Changed: watch.SpecChanged},
		{Object: &gwv1.Gateway{}, Func: translate(listGateways), Changed: watch.SpecChanged},
		{Object: &gwv1.HTTPRoute{}, Func: translate(listHTTPRoutes), Changed: watch.SpecChanged},
		{Object: &gwv1.GRPCRoute{}, Func: translate(listGRPCRoutes), Changed: watch.SpecChanged},
		{Object: &gwv1b1.ReferenceGrant{}, Func: translate(listGrants)},
		{Object: &corev1.Namespace{}, Func: translate(listNamespaces)},
		{Object: &corev1.Secret{}, Func: translate(listSecrets)},
		{Object: &networkingv1.Ingress{}, Func: translate(listIngresses), Changed: watch.SpecChanged},
		{Object: &networkingv1.IngressClass{}, Func: translate(listIngressClasses)},
		// A Service matters for translation (ports, appProtocol) and, when
		// it is a fleet's, for its address in the owner's status.
		{Object: &corev1.Service{}, Func: translate(listServices)},
		{Object: &appsv1.Deployment{}, Func: translate(-1)},
		{Object: &discoveryv1.EndpointSlice{}, Func: e.endpointsChanged},
	}
	if err := watch.Subscribe(context.Background(), mgr.GetCache(), subs...); err != nil {
		return fmt.Errorf("gateway watches: %w", err)
	}
	return mgr.Add(e)
}

// NeedLeaderElection: see SetupGateway.
func (e *gatewayEngine) NeedLeaderElection() bool { return true }

// Start serves xDS and runs the translation loop until ctx ends.
func (e *gatewayEngine) Start(ctx context.Context) error {
	log := ctrl.LoggerFrom(ctx).WithName("gateway")
	creds, cert, err := e.pki.serverCredentials(ctx)
	if err != nil {
		return fmt.Errorf("xDS server certificate: %w", err)
	}
	srv, err := server.New(server.Options{Credentials: creds, Registerer: e.reg, Log: log.WithName("xds"), Limits: e.opts.XDSLimits})
	if err != nil {
		return err
	}
	e.server = srv
	lis, err := net.Listen("tcp", e.opts.XDSBind)
	if err != nil {
		return fmt.Errorf("xDS listen on %s: %w", e.opts.XDSBind, err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx, lis) }()
	e.serving.Store(true)
	defer e.serving.Store(false)
	e.markLeader(ctx, log)
	log.Info("serving xDS", "address", lis.Addr().String())

	renew := time.NewTimer(time.Until(pki.RenewAt(cert)))
	defer renew.Stop()
	resync := watch.Resync(0)
	defer resync.Stop()
	var status settleTimer
	defer status.stop()
	// failed logs a step's error and tries again in 2 s, unless the
	// engine is stopping, which is what ended the step.
	failed := func(err error, msg string, again func()) {
		if ctx.Err() != nil {
			return
		}
		log.Error(err, msg)
		time.AfterFunc(2*time.Second, again)
	}
	e.translate.Fire()
	synced, statusDone := false, false
	for {
		select {
		case <-ctx.Done():
			return <-served
		case err := <-served:
			if ctx.Err() != nil {
				// Stopping: the server saw the end first.
				return err
			}
			if err == nil {
				err = errors.New("stopped on its own")
			}
			return fmt.Errorf("xDS server: %w", err)
		case <-e.translate.C():
			// One update Fires twice (old and new object): what Fired
			// before this sync began does not need another.
			m := e.translate.Take()
			err := e.sync(ctx)
			if e.result != nil {
				status.arm(time.Now())
			}
			if err != nil {
				failed(err, "gateway sync failed; retrying", e.translate.Fire)
				break
			}
			e.translate.Done(m)
			if !synced {
				synced = true
				e.leanGC(log)
			}
		case <-e.eds.C():
			m := e.eds.Take()
			if err := e.syncEndpoints(ctx); err != nil {
				failed(err, "endpoint sync failed; retrying", e.eds.Fire)
				break
			}
			e.eds.Done(m)
		case <-status.C():
			status.fired()
			t := time.Now()
			err := e.writeStatuses(ctx, nil)
			e.metrics.step(stepStatus, t)
			if err != nil {
				failed(err, "gateway status failed; retrying", e.translate.Fire)
			} else if !statusDone {
				statusDone = true
				e.leanAfterStatus(log)
			} else {
				e.collectIdle()
			}
		case <-srv.Changed():
			if err := e.writeStatuses(ctx, srv.TakeChanged()); err != nil {
				failed(err, "gateway status after an Envoy change failed; retrying", e.translate.Fire)
			}
		case <-renew.C:
			creds, cert, err := e.pki.serverCredentials(ctx)
			if err == nil {
				err = srv.SetCredentials(creds)
			}
			next := time.Hour
			if err == nil {
				next = time.Until(pki.RenewAt(cert))
				e.translate.Fire() // reissue fleets' certificates if the CA moved
			} else {
				log.Error(err, "renew the xDS server certificate; retrying in an hour")
			}
			renew.Reset(next)
		case <-resync.C:
			// A repair of what a failed step left; the lists are the
			// informers' and follow their events.
			e.translate.Fire()
		}
	}
}

// leanGC hands the first sync's garbage (every object listed, translated
// and written at once) back to the system and keeps the heap within 1.25x
// of what is live from then on, as berth-agent does: steady state
// allocates little (a change retranslates what it touched), and the
// controller's memory is then what it holds, not what it once built.
// GOGC or GOMEMLIMIT in the environment, or KeepGC, leave the runtime be.
func (e *gatewayEngine) leanGC(log logr.Logger) {
	if !e.tuneGC() {
		return
	}
	debug.SetGCPercent(25)
	debug.FreeOSMemory()
	log.V(1).Info("first sync done; garbage collector tightened (GOGC=25)")
}

// leanAfterStatus hands back what the first status pass built: at start
// every route's status is written (thousands of patches, their requests
// and answers), after the first sync's leanGC.
func (e *gatewayEngine) leanAfterStatus(log logr.Logger) {
	if !e.tuneGC() {
		return
	}
	debug.FreeOSMemory()
	log.V(1).Info("first status pass done; its memory returned")
}

// collectIdle runs a garbage collection now, while changes pause (the
// status pass runs once they do), unless one is running: a change then
// starts with the heap's whole allowance instead of meeting a collection
// on its way to the Envoys. At GOGC=25 over a heap of thousands of routes
// a collection comes every few changes and doubles the time of the change
// it meets. GOGC or GOMEMLIMIT in the environment, or KeepGC, leave the
// runtime be.
func (e *gatewayEngine) collectIdle() {
	if !e.tuneGC() || !e.collecting.CompareAndSwap(false, true) {
		return
	}
	go func() {
		defer e.collecting.Store(false)
		runtime.GC()
	}()
}

func (e *gatewayEngine) tuneGC() bool {
	return !e.opts.KeepGC && os.Getenv("GOGC") == "" && os.Getenv("GOMEMLIMIT") == ""
}
