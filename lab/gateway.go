package lab

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
	gwv1b1 "sigs.k8s.io/gateway-api/apis/v1beta1"

	"github.com/berthnet/berth/xds/adsclient"
)

// The lab's Gateway: no Envoy can run here (no binary, no image for the pod
// runner), so the demo shows what Berth does up to Envoy: the Gateway's
// address from the pool, a status that says honestly no Envoy has
// connected, and the configuration its Envoys would be served.

// GatewayClassName is the GatewayClass the lab creates for Berth.
const GatewayClassName = "berth"

// DemoGateway is the demo's Gateway in DemoNamespace.
const DemoGateway = "web"

// GatewayClient is a cluster-admin controller-runtime client that knows the
// Gateway API types.
func GatewayClient(cfg Config) (client.Client, error) {
	rc, err := clientcmd.BuildConfigFromFlags("", cfg.AdminKubeconfig())
	if err != nil {
		return nil, err
	}
	rc.UserAgent = "berthctl-lab"
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, gwv1.Install, gwv1b1.Install} {
		if err := add(s); err != nil {
			return nil, err
		}
	}
	return client.New(rc, client.Options{Scheme: s})
}

// DemoGatewayObjects are the GatewayClass, the Gateway (HTTP on 80 for
// *.lab.example) and an HTTPRoute sending echo.lab.example to the demo's
// echo Service.
func DemoGatewayObjects() []client.Object {
	same := gwv1.NamespacesFromSame
	return []client.Object{
		&gwv1.GatewayClass{ObjectMeta: metav1.ObjectMeta{Name: GatewayClassName}, Spec: gwv1.GatewayClassSpec{ControllerName: "berth.dev/gateway"}},
		&gwv1.Gateway{
			ObjectMeta: metav1.ObjectMeta{Namespace: DemoNamespace, Name: DemoGateway},
			Spec: gwv1.GatewaySpec{GatewayClassName: GatewayClassName, Listeners: []gwv1.Listener{{
				Name: "http", Port: 80, Protocol: gwv1.HTTPProtocolType, Hostname: ptr.To(gwv1.Hostname("*.lab.example")),
				AllowedRoutes: &gwv1.AllowedRoutes{Namespaces: &gwv1.RouteNamespaces{From: &same}},
			}}},
		},
		&gwv1.HTTPRoute{
			ObjectMeta: metav1.ObjectMeta{Namespace: DemoNamespace, Name: "echo"},
			Spec: gwv1.HTTPRouteSpec{
				CommonRouteSpec: gwv1.CommonRouteSpec{ParentRefs: []gwv1.ParentReference{{Name: DemoGateway}}},
				Hostnames:       []gwv1.Hostname{"echo.lab.example"},
				Rules: []gwv1.HTTPRouteRule{{
					Matches: []gwv1.HTTPRouteMatch{{Path: &gwv1.HTTPPathMatch{Type: ptr.To(gwv1.PathMatchPathPrefix), Value: ptr.To("/")}}},
					BackendRefs: []gwv1.HTTPBackendRef{{BackendRef: gwv1.BackendRef{BackendObjectReference: gwv1.BackendObjectReference{
						Name: "echo", Port: ptr.To(gwv1.PortNumber(8080)),
					}}}},
				}},
			},
		},
	}
}

// WaitGatewayAddress waits until the Gateway is Accepted and has an
// address, and returns it with its Programmed condition.
func WaitGatewayAddress(ctx context.Context, c client.Client, ns, name string, timeout time.Duration) (string, metav1.Condition, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var gw gwv1.Gateway
	for {
		err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &gw)
		if err == nil {
			acc := meta.FindStatusCondition(gw.Status.Conditions, string(gwv1.GatewayConditionAccepted))
			prog := meta.FindStatusCondition(gw.Status.Conditions, string(gwv1.GatewayConditionProgrammed))
			if acc != nil && acc.Status == metav1.ConditionTrue && prog != nil && len(gw.Status.Addresses) > 0 {
				return gw.Status.Addresses[0].Value, *prog, nil
			}
		}
		select {
		case <-ctx.Done():
			return "", metav1.Condition{}, fmt.Errorf("gateway %s/%s has no address (status %+v): %w", ns, name, gw.Status.Conditions, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func demoGateway(ctx context.Context, cfg Config, out io.Writer) int {
	c, err := GatewayClient(cfg)
	if err != nil {
		fmt.Fprintf(out, "• Gateway: FAILED: %v\n", err)
		return 1
	}
	for _, o := range DemoGatewayObjects() {
		if err := c.Create(ctx, o); err != nil && !apierrors.IsAlreadyExists(err) {
			fmt.Fprintf(out, "• Gateway: create %T %s: FAILED: %v\n", o, o.GetName(), err)
			return 1
		}
	}
	gwAddr, prog, err := WaitGatewayAddress(ctx, c, DemoNamespace, DemoGateway, time.Minute)
	if err != nil {
		fmt.Fprintf(out, "• Gateway: FAILED: %v\n", err)
		return 1
	}
	fmt.Fprintf(out, "• Gateway %s/%s (class %s): address %s; Programmed=%s (%s): %s\n", DemoNamespace, DemoGateway, GatewayClassName, gwAddr, prog.Status, prog.Reason, prog.Message)
	fctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var cfgs adsclient.Config
	addr, name, opts, done, err := cfg.XDSEndpoint(fctx)
	if err != nil {
		fmt.Fprintf(out, "    xDS: FAILED: %v\n", err)
		return 1
	}
	defer done()
	// The fleet's Secret appears with the first sync; retry until served.
	for {
		cfgs, _, err = adsclient.FetchFleet(fctx, c, adsclient.GatewayFleet(Namespace, DemoNamespace, DemoGateway), addr, name, opts...)
		if err == nil || fctx.Err() != nil {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	if err != nil {
		fmt.Fprintf(out, "    xDS: FAILED: %v\n", err)
		return 1
	}
	fmt.Fprintf(out, "    what its Envoys are served (berthctl gateway config --lab %s %s/%s prints all of it):\n", cfg.Name, DemoNamespace, DemoGateway)
	for _, m := range cfgs[resourcev3.ListenerType] {
		l := m.(*listenerv3.Listener)
		fmt.Fprintf(out, "      listener %s on port %d\n", l.Name, l.GetAddress().GetSocketAddress().GetPortValue())
	}
	for _, m := range cfgs[resourcev3.RouteType] {
		rc := m.(*routev3.RouteConfiguration)
		for _, vh := range rc.VirtualHosts {
			for _, r := range vh.Routes {
				fmt.Fprintf(out, "      route %s %s%s → %s\n", rc.Name, strings.Join(vh.Domains, ","), matchText(r.GetMatch()), r.GetRoute().GetCluster())
			}
		}
	}
	fmt.Fprintf(out, "      %d clusters, %d endpoint sets\n", len(cfgs[resourcev3.ClusterType]), len(cfgs[resourcev3.EndpointType]))
	return 0
}

func matchText(m *routev3.RouteMatch) string {
	switch {
	case m.GetPath() != "":
		return m.GetPath()
	case m.GetPrefix() != "":
		return m.GetPrefix() + "*"
	case m.GetPathSeparatedPrefix() != "":
		return m.GetPathSeparatedPrefix() + "/*"
	case m.GetSafeRegex() != nil:
		return "~" + m.GetSafeRegex().GetRegex()
	}
	return ""
}
