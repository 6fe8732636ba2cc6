package gatewayapi

import (
	"strconv"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
	gwv1b1 "sigs.k8s.io/gateway-api/apis/v1beta1"

	"github.com/berthnet/berth/xds/ir"
)

// Controller names Berth answers to.
const (
	// GatewayControllerName is the spec.controllerName of Berth's GatewayClasses.
	GatewayControllerName gwv1.GatewayController = "berth.dev/gateway"
	// IngressControllerName is the spec.controller of Berth's IngressClasses.
	IngressControllerName = "berth.dev/ingress"
)

// Annotations read from Ingress objects.
const (
	// DefaultIngressClassAnnotation marks the IngressClass that takes the
	// Ingresses without a class.
	DefaultIngressClassAnnotation = "ingressclass.kubernetes.io/is-default-class"
	// LegacyIngressClassAnnotation is the class annotation older Ingresses use
	// instead of spec.ingressClassName.
	LegacyIngressClassAnnotation = "kubernetes.io/ingress.class"
)

// Resources is the snapshot Translate reads: plain lists, as the API server
// returns them. Order does not matter; Translate sorts what it emits.
type Resources struct {
	GatewayClasses  []gwv1.GatewayClass
	Gateways        []gwv1.Gateway
	HTTPRoutes      []gwv1.HTTPRoute
	GRPCRoutes      []gwv1.GRPCRoute
	ReferenceGrants []gwv1b1.ReferenceGrant
	// Namespaces are read for their labels (allowedRoutes selectors).
	Namespaces []corev1.Namespace
	Services   []corev1.Service
	// Secrets of type kubernetes.io/tls referenced by listeners and Ingresses;
	// others are ignored.
	Secrets        []corev1.Secret
	Ingresses      []networkingv1.Ingress
	IngressClasses []networkingv1.IngressClass
}

// Options tune Translate. The zero value is Berth's defaults.
type Options struct {
	// GatewayController replaces GatewayControllerName when set.
	GatewayController gwv1.GatewayController
	// IngressController replaces IngressControllerName when set.
	IngressController string
}

func (o Options) gatewayController() gwv1.GatewayController {
	if o.GatewayController != "" {
		return o.GatewayController
	}
	return GatewayControllerName
}

func (o Options) ingressController() string {
	if o.IngressController != "" {
		return o.IngressController
	}
	return IngressControllerName
}

// nn is a namespaced name, the key of every index.
type nn struct{ ns, name string }

func (k nn) String() string { return k.ns + "/" + k.name }

// index holds the lookups translation needs, built once per Translate.
type index struct {
	namespaces map[string]*corev1.Namespace
	services   map[nn]*corev1.Service
	secrets    map[nn]*corev1.Secret
	// grants by the namespace they grant access to.
	grants map[string][]*gwv1b1.ReferenceGrant
	// clusters memoizes the cluster of each Service port and protocol: the
	// same backend named by many routes is one value (IR values are never
	// mutated once built).
	clusters map[clusterKey]*ir.Cluster
	// rec, while a Memo compiles a route, records what it reads;
	// grantVersions caches grantVersion.
	rec           *recorder
	grantVersions map[string]string
}

type clusterKey struct {
	ns, name string
	port     int32
	protocol ir.Protocol
}

func newIndex(res *Resources) *index {
	ix := &index{
		namespaces: make(map[string]*corev1.Namespace, len(res.Namespaces)),
		services:   make(map[nn]*corev1.Service, len(res.Services)),
		secrets:    make(map[nn]*corev1.Secret, len(res.Secrets)),
		grants:     make(map[string][]*gwv1b1.ReferenceGrant),
		clusters:   make(map[clusterKey]*ir.Cluster),
	}
	for i := range res.Namespaces {
		ix.namespaces[res.Namespaces[i].Name] = &res.Namespaces[i]
	}
	for i := range res.Services {
		s := &res.Services[i]
		ix.services[nn{s.Namespace, s.Name}] = s
	}
	for i := range res.Secrets {
		s := &res.Secrets[i]
		ix.secrets[nn{s.Namespace, s.Name}] = s
	}
	for i := range res.ReferenceGrants {
		g := &res.ReferenceGrants[i]
		ix.grants[g.Namespace] = append(ix.grants[g.Namespace], g)
	}
	return ix
}

// cluster returns the cluster of a Service port.
func (ix *index) cluster(ns, name string, port *corev1.ServicePort, protocol ir.Protocol) *ir.Cluster {
	k := clusterKey{ns, name, port.Port, protocol}
	if c, ok := ix.clusters[k]; ok {
		return c
	}
	c := &ir.Cluster{
		Name:      ns + "/" + name + "/" + strconv.Itoa(int(port.Port)),
		Namespace: ns, Service: name, Port: port.Port, PortName: port.Name,
		Protocol: protocol,
	}
	ix.clusters[k] = c
	return c
}
