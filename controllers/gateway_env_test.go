package controllers_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	crcache "sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
	gwv1b1 "sigs.k8s.io/gateway-api/apis/v1beta1"

	"github.com/berthnet/berth/api/v1alpha1"
	"github.com/berthnet/berth/controllers"
	"github.com/berthnet/berth/test/kubetest"
	"github.com/berthnet/berth/xds/adsclient"
	"github.com/berthnet/berth/xds/pki"
	"github.com/berthnet/berth/xds/provision"
)

// gwEnv is a real API server with Berth's and the Gateway API's CRDs, the
// LB IPAM controller (so a Gateway's Service gets an address) and the
// Gateway engine serving xDS on a loopback port.
type gwEnv struct {
	t *testing.T
	// c is the cluster's administrator; ctl is the controller's own
	// identity, whose rights are the chart's roles, as the manager's.
	c, ctl  client.Client
	xdsAddr string
	ctx     context.Context
	reg     *prometheus.Registry // the controller's metrics
}

const gwWait = 30 * time.Second

func newGWEnv(t *testing.T) *gwEnv { return newGWEnvWith(t, nil) }

// newGWEnvWith runs the engine with options changed by opt, after before
// has created what must exist when it starts.
func newGWEnvWith(t *testing.T, opt func(*controllers.GatewayOptions), before ...client.Object) *gwEnv {
	t.Helper()
	env := kubetest.Start(t, kubetest.Options{CRDPaths: []string{
		filepath.Join("..", "config", "crd", "bases"), filepath.Join("..", "config", "crd", "gateway-api"),
	}})
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, v1alpha1.AddToScheme, gwv1.Install, gwv1b1.Install} {
		if err := add(s); err != nil {
			t.Fatal(err)
		}
	}
	c, err := client.New(env.Config, client.Options{Scheme: s})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	e := &gwEnv{t: t, c: c, ctx: ctx, xdsAddr: freeLoopbackPort(t)}
	e.create(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "berth-system"}})
	e.create(ippool("gw-pool", "198.51.100.32/28"))
	for _, o := range before {
		var lb corev1.LoadBalancerStatus
		if svc, ok := o.(*corev1.Service); ok {
			lb = svc.Status.LoadBalancer
		}
		e.create(o)
		if len(lb.Ingress) > 0 {
			// What an earlier controller wrote, there before this one starts.
			svc := o.(*corev1.Service)
			svc.Status.LoadBalancer = lb
			if err := c.Status().Update(ctx, svc); err != nil {
				t.Fatal(err)
			}
		}
	}

	// The engine runs with exactly the rights the chart gives the
	// controller's ServiceAccount: a write its roles do not allow fails
	// here as in a cluster.
	ctlConfig := controllerConfig(t, env)
	if e.ctl, err = client.New(ctlConfig, client.Options{Scheme: s}); err != nil {
		t.Fatal(err)
	}
	mgr, err := ctrl.NewManager(ctlConfig, ctrl.Options{
		Scheme:                 s,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Controller:             config.Controller{SkipNameValidation: ptr.To(true)},
		Cache:                  crcache.Options{ByObject: controllers.GatewayCacheByObject("berth-system")},
	})
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	e.reg = reg
	if err := controllers.SetupLBIPAM(mgr, controllers.LBIPAMOptions{ServeUnclassed: true, FleetNamespace: "berth-system"}, reg); err != nil {
		t.Fatal(err)
	}
	gopts := controllers.GatewayOptions{
		Namespace: "berth-system", XDSBind: e.xdsAddr, XDSAddress: e.xdsAddr,
		ServerNames: pki.ServerNames{IPs: []net.IP{net.ParseIP("127.0.0.1")}},
		Bootstrap:   func(group string) ([]byte, error) { return []byte("node: {cluster: " + group + "}\n"), nil },
	}
	if opt != nil {
		opt(&gopts)
	}
	err = controllers.SetupGateway(mgr, gopts, reg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cancel)
	runManager(t, ctx, mgr)
	return e
}

func freeLoopbackPort(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func (e *gwEnv) create(obj client.Object) {
	e.t.Helper()
	if err := e.c.Create(e.ctx, obj); err != nil {
		e.t.Fatalf("create %T %s: %v", obj, obj.GetName(), err)
	}
}

// histogramCounts returns the sample count of each series of a histogram
// metric, by its labels ("step=serve"; "" for none).
func (e *gwEnv) histogramCounts(name string) map[string]uint64 {
	e.t.Helper()
	mfs, err := e.reg.Gather()
	if err != nil {
		e.t.Fatal(err)
	}
	out := map[string]uint64{}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+"="+l.GetValue())
			}
			out[strings.Join(labels, ",")] = m.GetHistogram().GetSampleCount()
		}
	}
	return out
}

// eventually polls f until it returns nil, failing the test with its last
// error after gwWait.
func (e *gwEnv) eventually(what string, f func() error) {
	e.t.Helper()
	deadline := time.Now().Add(gwWait)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func conditionIs(conds []metav1.Condition, typ string, status metav1.ConditionStatus, reason string) error {
	c := meta.FindStatusCondition(conds, typ)
	if c == nil {
		return fmt.Errorf("no %s condition in %+v", typ, conds)
	}
	if c.Status != status || (reason != "" && c.Reason != reason) {
		return fmt.Errorf("%s is %s/%s (%s), want %s/%s", typ, c.Status, c.Reason, c.Message, status, reason)
	}
	return nil
}

func (e *gwEnv) gatewayCondition(ns, name, typ string, status metav1.ConditionStatus, reason string) *gwv1.Gateway {
	e.t.Helper()
	var gw gwv1.Gateway
	e.eventually(fmt.Sprintf("Gateway %s/%s %s=%s/%s", ns, name, typ, status, reason), func() error {
		if err := e.c.Get(e.ctx, client.ObjectKey{Namespace: ns, Name: name}, &gw); err != nil {
			return err
		}
		return conditionIs(gw.Status.Conditions, typ, status, reason)
	})
	return &gw
}

func (e *gwEnv) routeCondition(ns, name, typ string, status metav1.ConditionStatus, reason string) {
	e.t.Helper()
	e.eventually(fmt.Sprintf("HTTPRoute %s/%s %s=%s/%s", ns, name, typ, status, reason), func() error {
		var r gwv1.HTTPRoute
		if err := e.c.Get(e.ctx, client.ObjectKey{Namespace: ns, Name: name}, &r); err != nil {
			return err
		}
		if len(r.Status.Parents) != 1 {
			return fmt.Errorf("%d parents in status", len(r.Status.Parents))
		}
		return conditionIs(r.Status.Parents[0].Conditions, typ, status, reason)
	})
}

// envoy connects to the xDS server as an Envoy of the Gateway's fleet,
// with the client certificate the controller put in the fleet's Secret.
func (e *gwEnv) envoy(ns, gateway, nodeID string) (*adsclient.Client, adsclient.Config) {
	e.t.Helper()
	var sec corev1.Secret
	name := provision.SecretName(provision.GatewayFleetName(ns, gateway))
	e.eventually("fleet Secret "+name, func() error {
		return e.c.Get(e.ctx, client.ObjectKey{Namespace: "berth-system", Name: name}, &sec)
	})
	cert, err := tls.X509KeyPair(sec.Data["tls.crt"], sec.Data["tls.key"])
	if err != nil {
		e.t.Fatal(err)
	}
	roots, err := pki.DecodeCertsPEM(sec.Data["ca.crt"])
	if err != nil {
		e.t.Fatal(err)
	}
	conn, err := adsclient.Dial(e.xdsAddr, &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pki.Pool(roots...), ServerName: "127.0.0.1", MinVersion: tls.VersionTLS13})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { _ = conn.Close() })
	var (
		c   *adsclient.Client
		cfg adsclient.Config
	)
	// The server listens once the engine has its certificate: retry the stream.
	e.eventually("ADS stream", func() error {
		var err error
		c, err = adsclient.Open(e.ctx, conn, &core.Node{Id: nodeID, Cluster: "gateway/" + ns + "/" + gateway})
		if err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(e.ctx, 5*time.Second)
		defer cancel()
		if cfg, _, err = c.Fetch(ctx); err != nil {
			c.Close()
			return err
		}
		return nil
	})
	e.t.Cleanup(c.Close)
	return c, cfg
}

// next waits for the next response of a type.
func next(t *testing.T, c *adsclient.Client, typeURL string) *discovery.DiscoveryResponse {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), gwWait)
	defer cancel()
	r, err := c.Next(ctx, typeURL)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func berthClass() *gwv1.GatewayClass {
	return &gwv1.GatewayClass{ObjectMeta: metav1.ObjectMeta{Name: "berth"}, Spec: gwv1.GatewayClassSpec{ControllerName: "berth.dev/gateway"}}
}

func httpGateway(ns, name string) *gwv1.Gateway {
	all := gwv1.NamespacesFromAll
	return &gwv1.Gateway{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: gwv1.GatewaySpec{GatewayClassName: "berth", Listeners: []gwv1.Listener{{
			Name: "http", Port: 80, Protocol: gwv1.HTTPProtocolType, Hostname: ptr.To(gwv1.Hostname("*.example.com")),
			AllowedRoutes: &gwv1.AllowedRoutes{Namespaces: &gwv1.RouteNamespaces{From: &all}},
		}}},
	}
}

func httpRoute(ns, name, gwNS, gw, host, svcNS, svc string) *gwv1.HTTPRoute {
	var backendNS *gwv1.Namespace
	if svcNS != ns {
		backendNS = ptr.To(gwv1.Namespace(svcNS))
	}
	return &gwv1.HTTPRoute{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: gwv1.HTTPRouteSpec{
			CommonRouteSpec: gwv1.CommonRouteSpec{ParentRefs: []gwv1.ParentReference{{Name: gwv1.ObjectName(gw), Namespace: ptr.To(gwv1.Namespace(gwNS))}}},
			Hostnames:       []gwv1.Hostname{gwv1.Hostname(host)},
			Rules: []gwv1.HTTPRouteRule{{BackendRefs: []gwv1.HTTPBackendRef{{BackendRef: gwv1.BackendRef{BackendObjectReference: gwv1.BackendObjectReference{
				Name: gwv1.ObjectName(svc), Namespace: backendNS, Port: ptr.To(gwv1.PortNumber(8080)),
			}}}}}},
		},
	}
}

func webService(ns, name string, addrs ...string) (*corev1.Service, *discoveryv1.EndpointSlice) {
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       corev1.ServiceSpec{Selector: map[string]string{"app": name}, Ports: []corev1.ServicePort{{Name: "http", Port: 8080}}},
	}
	eps := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: ns, Name: name + "-1", Labels: map[string]string{discoveryv1.LabelServiceName: name}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To(int32(8080))}},
	}
	for _, a := range addrs {
		eps.Endpoints = append(eps.Endpoints, discoveryv1.Endpoint{Addresses: []string{a}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}})
	}
	return svc, eps
}

func contains(msgs []string, s string) bool {
	for _, m := range msgs {
		if strings.Contains(m, s) {
			return true
		}
	}
	return false
}
