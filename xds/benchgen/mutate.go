package benchgen

import (
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
	gwv1b1 "sigs.k8s.io/gateway-api/apis/v1beta1"

	"github.com/berthnet/berth/xds/gatewayapi"
)

// Resources turns a generated input into the snapshot gatewayapi.Translate
// reads (the EndpointSlices stay in the input).
func Resources(in *Input) *gatewayapi.Resources {
	return &gatewayapi.Resources{
		GatewayClasses: []gwv1.GatewayClass{in.GatewayClass},
		Gateways:       []gwv1.Gateway{in.Gateway},
		HTTPRoutes:     in.HTTPRoutes,
		Namespaces:     in.Namespaces,
		Services:       in.Services,
	}
}

// Chooser draws choices from a fuzzer's bytes (zero once they run out).
type Chooser struct{ b []byte }

// NewChooser draws from data.
func NewChooser(data []byte) *Chooser { return &Chooser{data} }

// More reports whether bytes are left to choose with.
func (c *Chooser) More() bool { return len(c.b) > 0 }

// N is a choice in [0, k).
func (c *Chooser) N(k int) int {
	if len(c.b) == 0 || k <= 0 {
		return 0
	}
	v := int(c.b[0]) % k
	c.b = c.b[1:]
	return v
}

func pick[T any](c *Chooser, vs ...T) T { return vs[c.N(len(vs))] }

func fuzzHostnames() []gwv1.Hostname {
	return []gwv1.Hostname{"r0.example.com", "*.example.com", "example.com", "*.com", "a.b.example.com", "other.org", "*.b.example.com"}
}

// Mutate makes one change, drawn from c, to a snapshot made by Resources:
// matches, hostnames, parentRefs, backends, filters, timeouts, listeners,
// Secrets, ReferenceGrants, missing Services, appProtocols, addresses,
// class parameters, GRPCRoutes sharing an HTTPRoute's hostnames, routes
// added and removed, hostnames replaced, creation times tied, Gateway
// and route status written. The
// result is what a user could apply (invalid values included, which
// translation must refuse in status), for fuzz targets of the pipeline.
func Mutate(c *Chooser, res *gatewayapi.Resources) {
	hostnames := fuzzHostnames()
	gw := &res.Gateways[0]
	r := &res.HTTPRoutes[c.N(len(res.HTTPRoutes))]
	rule := &r.Spec.Rules[c.N(len(r.Spec.Rules))]
	switch c.N(23) {
	case 0: // path
		t := pick(c, gwv1.PathMatchExact, gwv1.PathMatchPathPrefix, gwv1.PathMatchRegularExpression)
		v := pick(c, "/", "/a", "/a/", "(", "/x/[0-9]+", "", "noslash", "//")
		rule.Matches = append(rule.Matches, gwv1.HTTPRouteMatch{Path: &gwv1.HTTPPathMatch{Type: &t, Value: &v}})
	case 1: // headers, query, method
		m := gwv1.HTTPRouteMatch{Method: pick(c, nil, ptr(gwv1.HTTPMethodGet))}
		ht := pick(c, gwv1.HeaderMatchExact, gwv1.HeaderMatchRegularExpression)
		m.Headers = append(m.Headers, gwv1.HTTPHeaderMatch{Type: &ht, Name: pick[gwv1.HTTPHeaderName](c, "x", "X", "y"), Value: pick(c, "1", "[", ".*")})
		qt := pick(c, gwv1.QueryParamMatchExact, gwv1.QueryParamMatchRegularExpression)
		m.QueryParams = append(m.QueryParams, gwv1.HTTPQueryParamMatch{Type: &qt, Name: "q", Value: pick(c, "1", "(")})
		rule.Matches = append(rule.Matches, m)
	case 2:
		r.Spec.Hostnames = append(r.Spec.Hostnames, pick(c, hostnames...))
	case 3: // parentRef
		p := &r.Spec.ParentRefs[0]
		p.SectionName = pick(c, nil, ptr(gwv1.SectionName("http")), ptr(gwv1.SectionName("https")), ptr(gwv1.SectionName("nope")))
		p.Port = pick(c, nil, ptr(gwv1.PortNumber(80)), ptr(gwv1.PortNumber(443)))
		p.Namespace = pick(c, p.Namespace, nil)
	case 4: // backend
		b := gwv1.HTTPBackendRef{BackendRef: gwv1.BackendRef{BackendObjectReference: gwv1.BackendObjectReference{
			Name:      pick[gwv1.ObjectName](c, "svc-0", "svc-1", "gone"),
			Namespace: pick(c, nil, ptr(gwv1.Namespace("bench-1")), ptr(gwv1.Namespace("bench-2"))),
			Port:      pick(c, nil, ptr(gwv1.PortNumber(8080)), ptr(gwv1.PortNumber(1))),
			Kind:      pick(c, nil, ptr(gwv1.Kind("Service")), ptr(gwv1.Kind("Bucket"))),
		}, Weight: pick(c, nil, ptr(int32(0)), ptr(int32(5)))}}
		rule.BackendRefs = append(rule.BackendRefs, b)
	case 5:
		rule.BackendRefs = nil
	case 6: // filters
		pt := pick(c, gwv1.FullPathHTTPPathModifier, gwv1.PrefixMatchHTTPPathModifier)
		pm := &gwv1.HTTPPathModifier{Type: pt, ReplaceFullPath: ptr("/full"), ReplacePrefixMatch: ptr("/p")}
		f := pick(c,
			gwv1.HTTPRouteFilter{Type: gwv1.HTTPRouteFilterRequestRedirect, RequestRedirect: &gwv1.HTTPRequestRedirectFilter{Path: pm, StatusCode: pick(c, nil, ptr(301), ptr(200))}},
			gwv1.HTTPRouteFilter{Type: gwv1.HTTPRouteFilterURLRewrite, URLRewrite: &gwv1.HTTPURLRewriteFilter{Path: pm}},
			gwv1.HTTPRouteFilter{Type: gwv1.HTTPRouteFilterRequestMirror, RequestMirror: &gwv1.HTTPRequestMirrorFilter{
				BackendRef: gwv1.BackendObjectReference{Name: pick[gwv1.ObjectName](c, "svc-0", "gone"), Port: ptr(gwv1.PortNumber(8080))},
				Percent:    pick(c, nil, ptr(int32(50)), ptr(int32(500)))}},
			gwv1.HTTPRouteFilter{Type: gwv1.HTTPRouteFilterResponseHeaderModifier, ResponseHeaderModifier: &gwv1.HTTPHeaderFilter{Remove: []string{"x"}}},
			gwv1.HTTPRouteFilter{Type: gwv1.HTTPRouteFilterExtensionRef},
			gwv1.HTTPRouteFilter{Type: gwv1.HTTPRouteFilterRequestHeaderModifier},
			gwv1.HTTPRouteFilter{Type: gwv1.HTTPRouteFilterRequestHeaderModifier, RequestHeaderModifier: &gwv1.HTTPHeaderFilter{
				Set: []gwv1.HTTPHeader{{Name: "X-Split", Value: pick(c, "a\r\nb", "ok", "")}}}},
		)
		rule.Filters = append(rule.Filters, f)
	case 7: // timeouts
		rule.Timeouts = &gwv1.HTTPRouteTimeouts{
			Request:        pick(c, nil, ptr(gwv1.Duration("10s")), ptr(gwv1.Duration("x")), ptr(gwv1.Duration("0s"))),
			BackendRequest: pick(c, nil, ptr(gwv1.Duration("1s")), ptr(gwv1.Duration("0s"))),
		}
	case 8: // listeners
		l := gwv1.Listener{
			Name:     pick[gwv1.SectionName](c, "http", "https", "other"),
			Port:     pick[gwv1.PortNumber](c, 80, 443, 8080),
			Protocol: pick(c, gwv1.HTTPProtocolType, gwv1.HTTPSProtocolType, gwv1.TCPProtocolType),
			Hostname: pick(c, nil, &hostnames[c.N(len(hostnames))]),
		}
		if l.Protocol == gwv1.HTTPSProtocolType {
			l.TLS = &gwv1.ListenerTLSConfig{CertificateRefs: []gwv1.SecretObjectReference{{Name: pick[gwv1.ObjectName](c, "cert", "gone")}}}
		}
		from := pick(c, gwv1.NamespacesFromAll, gwv1.NamespacesFromSame, gwv1.NamespacesFromSelector)
		l.AllowedRoutes = &gwv1.AllowedRoutes{Namespaces: &gwv1.RouteNamespaces{From: &from,
			Selector: pick(c, nil, &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": "bench-1"}})}}
		gw.Spec.Listeners = append(gw.Spec.Listeners, l)
	case 9: // a broken Secret for the HTTPS listeners
		res.Secrets = put(res.Secrets, corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: gw.Namespace, Name: "cert"},
			Type: corev1.SecretTypeTLS, Data: map[string][]byte{"tls.crt": []byte("x"), "tls.key": []byte("y")}})
	case 10:
		res.ReferenceGrants = put(res.ReferenceGrants, gwv1b1.ReferenceGrant{
			ObjectMeta: metav1.ObjectMeta{Namespace: pick(c, "bench-1", "bench-2"), Name: "g"},
			Spec: gwv1b1.ReferenceGrantSpec{
				From: []gwv1b1.ReferenceGrantFrom{{Group: gwv1.GroupName, Kind: "HTTPRoute", Namespace: pick[gwv1.Namespace](c, "bench-0", "bench-1", "bench-3")}},
				To:   []gwv1b1.ReferenceGrantTo{{Kind: "Service"}},
			}})
	case 11:
		if len(res.Services) > 0 {
			i := c.N(len(res.Services))
			res.Services = append(res.Services[:i:i], res.Services[i+1:]...)
		}
	case 12:
		if len(res.Services) == 0 {
			return
		}
		s := &res.Services[c.N(len(res.Services))]
		s.Spec.Ports[0].AppProtocol = pick(c, ptr("kubernetes.io/h2c"), ptr("https"), ptr("http"))
	case 13:
		gw.Spec.Addresses = append(gw.Spec.Addresses, gwv1.GatewaySpecAddress{Type: pick(c, nil, ptr(gwv1.HostnameAddressType)), Value: pick(c, "10.0.0.1", "x")})
	case 14:
		res.GatewayClasses[0].Spec.ParametersRef = pick(c, nil, &gwv1.ParametersReference{Kind: "X", Name: "y"})
	case 15: // a GRPCRoute on the same Gateway
		g := gwv1.GRPCRoute{ObjectMeta: metav1.ObjectMeta{Namespace: r.Namespace, Name: "g" + r.Name}}
		g.Spec.ParentRefs = r.Spec.ParentRefs
		g.Spec.Hostnames = r.Spec.Hostnames
		mt := pick(c, gwv1.GRPCMethodMatchExact, gwv1.GRPCMethodMatchRegularExpression)
		g.Spec.Rules = []gwv1.GRPCRouteRule{{
			Matches: []gwv1.GRPCRouteMatch{{Method: &gwv1.GRPCMethodMatch{Type: &mt,
				Service: pick(c, nil, ptr("a.B"), ptr("(")), Method: pick(c, nil, ptr("M"))}}},
			BackendRefs: []gwv1.GRPCBackendRef{{BackendRef: gwv1.BackendRef{BackendObjectReference: gwv1.BackendObjectReference{
				Name: "svc-0", Port: ptr(gwv1.PortNumber(8080))}}}},
		}}
		res.GRPCRoutes = put(res.GRPCRoutes, g)
	case 16: // a route removed
		if len(res.HTTPRoutes) > 1 {
			i := c.N(len(res.HTTPRoutes))
			res.HTTPRoutes = append(res.HTTPRoutes[:i:i], res.HTTPRoutes[i+1:]...)
		}
	case 17: // a route added, as old as r or newer than all
		n := *r.DeepCopy()
		n.Name = unusedName(res, r.Name+"-copy")
		n.Spec.Hostnames = pick(c, n.Spec.Hostnames, nil, []gwv1.Hostname{pick(c, hostnames...)})
		if c.N(2) == 0 {
			n.CreationTimestamp = metav1.NewTime(n.CreationTimestamp.Add(time.Hour))
		}
		res.HTTPRoutes = append(res.HTTPRoutes, n)
	case 18: // hostnames replaced
		r.Spec.Hostnames = pick(c, nil, []gwv1.Hostname{pick(c, hostnames...)}, []gwv1.Hostname{pick(c, hostnames...), pick(c, hostnames...)})
	case 19: // as old as another route
		r.CreationTimestamp = res.HTTPRoutes[c.N(len(res.HTTPRoutes))].CreationTimestamp
	case 20: // the parentRef names another Gateway, or this one again
		p := &r.Spec.ParentRefs[0]
		p.Name = pick(c, p.Name, "elsewhere", gwv1.ObjectName(gw.Name))
	case 21: // the controller's own status write
		gw.Status.Addresses = append(gw.Status.Addresses, gwv1.GatewayStatusAddress{Value: "10.0.0.2"})
	case 22: // the same on a route: a new resourceVersion, the same spec
		r.Status.Parents = append(r.Status.Parents, gwv1.RouteParentStatus{ControllerName: "berth.dev/gateway", ParentRef: r.Spec.ParentRefs[0]})
	}
}

// unusedName is base, or base with a number, whichever no HTTPRoute in
// the namespace of base's route has.
func unusedName(res *gatewayapi.Resources, base string) string {
	name := base
	for i := 0; ; i++ {
		used := false
		for j := range res.HTTPRoutes {
			used = used || res.HTTPRoutes[j].Name == name
		}
		if !used {
			return name
		}
		name = base + "-" + strconv.Itoa(i)
	}
}

// put adds obj to list, or replaces the object of list with its namespace
// and name: the API server holds one object per name, so an input with two
// could never reach Translate (whose output may then depend on their order).
func put[T any, P interface {
	*T
	metav1.Object
}](list []T, obj T) []T {
	key := P(&obj)
	for i := range list {
		if o := P(&list[i]); o.GetNamespace() == key.GetNamespace() && o.GetName() == key.GetName() {
			list[i] = obj
			return list
		}
	}
	return append(list, obj)
}

func ptr[T any](v T) *T { return &v }
