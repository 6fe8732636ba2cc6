package gatewayapi

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/berthnet/berth/xds/ir"
)

// Result is what one translation produces: the configuration of every node
// group and the status of every object Berth manages. Everything is sorted
// so two translations of the same input are equal.
type Result struct {
	// Groups has one Group per managed Gateway ("gateway/<ns>/<name>") and
	// per Berth IngressClass ("ingress/<class>"), sorted by Name, each
	// having passed Validate. A Gateway that is not accepted still has its
	// (empty) Group so its Envoys are told to serve nothing.
	Groups []*ir.Group `json:"-"`
	// GatewayClasses are the classes whose controllerName is Berth's.
	GatewayClasses []GatewayClassResult `json:"gatewayClasses,omitempty"`
	// Gateways are the Gateways of those classes.
	Gateways []GatewayResult `json:"gateways,omitempty"`
	// HTTPRoutes and GRPCRoutes are the routes with at least one parentRef
	// to a managed Gateway; Parents holds only those parentRefs.
	HTTPRoutes []RouteResult `json:"httpRoutes,omitempty"`
	GRPCRoutes []RouteResult `json:"grpcRoutes,omitempty"`
	// Ingresses are the Ingresses of Berth's IngressClasses.
	Ingresses []IngressResult `json:"ingresses,omitempty"`
}

// GatewayClassResult is the status of one GatewayClass.
type GatewayClassResult struct {
	Name       string             `json:"name"`
	Conditions []metav1.Condition `json:"conditions"`
}

// GatewayResult is the status of one Gateway as far as translation knows.
// The Gateway's Programmed condition, its listeners' Programmed=True and
// its addresses depend on Envoy ACKs and on the provisioned Service: the
// controller adds them with SetProgrammed.
type GatewayResult struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	// Generation is the metadata.generation the status observes.
	Generation int64 `json:"generation"`
	// Group is the Gateway's node group.
	Group string `json:"group"`
	// Accepted is the Gateway's Accepted condition status.
	Accepted bool `json:"accepted"`
	// Clean is true when the Gateway and every listener translated without
	// a problem: all that is left for Programmed=True is Envoy's ACK and an
	// address.
	Clean bool `json:"clean"`
	// Addresses are the IP addresses spec.addresses asks for, for the
	// controller to request from IPAM.
	Addresses []string `json:"addresses,omitempty"`
	// Ports are the ports of the listeners that are served, sorted, for the
	// provisioned Service.
	Ports []int32 `json:"ports,omitempty"`
	// Status has the Accepted condition and every listener's status (with
	// Programmed=False for invalid listeners, Programmed=Unknown/Pending for
	// the others); no addresses.
	Status gwv1.GatewayStatus `json:"status"`
}

// RouteResult is the status of one HTTPRoute or GRPCRoute: one entry per
// parentRef that names a managed Gateway, in spec order.
type RouteResult struct {
	Namespace  string                   `json:"namespace"`
	Name       string                   `json:"name"`
	Generation int64                    `json:"generation"`
	Parents    []gwv1.RouteParentStatus `json:"parents"`
}

// IngressResult says which node group serves an Ingress, so the controller
// can copy that group's address into status.loadBalancer, and what in it
// could not be served, for events.
type IngressResult struct {
	Namespace string   `json:"namespace"`
	Name      string   `json:"name"`
	Group     string   `json:"group"`
	Problems  []string `json:"problems,omitempty"`
}
