// Package ir is the intermediate representation between the Kubernetes
// resources Berth reads (Gateway API, Ingress) and the Envoy resources it
// serves. One Group is everything one set of Envoys (a node group: one
// Gateway, or one IngressClass) is configured with. The first stage
// (xds/gatewayapi) produces it and validates it; the second
// (xds/translator) turns it into listeners, routes, clusters, endpoints and
// secrets. Both stages are pure functions, so a test can call either.
//
// The IR keeps the Gateway's own listeners apart, each with its routes
// already in the Gateway API's precedence order; merging listeners that
// share a port (virtual hosts for HTTP, filter chains by SNI for HTTPS) is
// the second stage's business.
package ir

import (
	"time"
)

// Group is the configuration of one Envoy node group.
type Group struct {
	// Name is the node group: "gateway/<namespace>/<name>" or
	// "ingress/<ingressclass>". Envoys send it as their node cluster.
	Name string
	// HTTP holds the HTTP and HTTPS listeners, sorted by Name.
	HTTP []*HTTPListener
	// Clusters are the upstream Services the routes send traffic to, sorted
	// by Name. Their endpoints are kept apart (Endpoints) so an endpoint
	// change never needs a new translation.
	Clusters []*Cluster
}

// Protocol a listener or cluster speaks.
type Protocol string

// Protocols.
const (
	HTTP  Protocol = "HTTP"
	HTTPS Protocol = "HTTPS"
	// HTTP2 is cleartext HTTP/2 to the upstream (gRPC backends).
	HTTP2 Protocol = "HTTP2"
)

// HTTPListener is one listener of a Gateway (or the port an Ingress group
// serves), with the routes attached to it.
type HTTPListener struct {
	// Name is unique in the group: "<namespace>/<gateway>/<listener>" or
	// "ingress/<class>/http".
	Name string
	// Port is the port Envoy binds.
	Port uint32
	// Hostname is the listener's hostname ("" matches any), possibly a
	// wildcard such as "*.example.com".
	Hostname string
	// TLS terminates HTTPS on this listener; nil for plain HTTP.
	TLS *TLS
	// Routes in precedence order: the first that matches a request wins.
	Routes []*HTTPRoute
}

// TLS is how a listener terminates TLS.
type TLS struct {
	// Certificates served, by SNI when there are several.
	Certificates []*Certificate
}

// Certificate is a certificate chain and its private key, from a Secret.
type Certificate struct {
	// Name is unique in the group; the SDS secret's name: "<namespace>/<secret>".
	Name string
	// Chain and Key are PEM.
	Chain, Key []byte
}

// HTTPRoute is one match of one rule of a route, bound to one hostname:
// the unit Envoy evaluates in order.
type HTTPRoute struct {
	// Name is unique in its listener, stable across translations, and names
	// its source: "httproute/<ns>/<name>/rule/<i>/match/<j>/host/<hostname>".
	Name string
	// Hostname is the request host this route serves: exact
	// ("foo.example.com"), a wildcard ("*.example.com"), or "" for any.
	Hostname string

	// Match. All set conditions must hold.
	Path        *StringMatch
	Headers     []*NamedMatch
	QueryParams []*NamedMatch
	// Method is an HTTP method ("GET"), "" for any.
	Method string

	// Filters.
	RequestHeaders  *HeaderModifier
	ResponseHeaders *HeaderModifier
	Rewrite         *URLRewrite
	Mirrors         []*Mirror

	// Action: exactly one of Redirect, DirectResponse and Backends.
	Redirect       *Redirect
	DirectResponse *DirectResponse
	// Backends with their weights; traffic splits by weight. A backend that
	// could not be resolved has an empty Cluster: requests weighted to it
	// get a 500 (a 503 when GRPC), as the Gateway API requires.
	Backends []*Backend
	// GRPC marks the route of a GRPCRoute: requests weighted to an
	// unresolved backend get a 503, which Envoy answers a gRPC client with
	// as grpc-status UNAVAILABLE, what the Gateway API requires for gRPC.
	GRPC bool `json:",omitempty"`

	// Timeouts; zero means Envoy's default for Timeout (15 s, or
	// BackendTimeout when that is set) and none for BackendTimeout.
	Timeout        time.Duration
	BackendTimeout time.Duration
	// TimeoutDisabled says the request has no timeout at all (the Gateway
	// API's request timeout "0s"), which a zero Timeout cannot say; Timeout
	// is then zero.
	TimeoutDisabled bool `json:",omitempty"`
}

// MatchType is how a string is compared.
type MatchType string

// Match types.
const (
	Exact  MatchType = "Exact"
	Prefix MatchType = "Prefix" // path prefix by whole segments
	Regex  MatchType = "Regex"  // RE2
)

// StringMatch compares one value.
type StringMatch struct {
	Type  MatchType
	Value string
}

// NamedMatch compares a header or query parameter by name.
type NamedMatch struct {
	Name string
	StringMatch
}

// Header is a header name and value.
type Header struct {
	Name, Value string
}

// HeaderModifier adds, sets and removes headers.
type HeaderModifier struct {
	Add    []Header
	Set    []Header
	Remove []string
}

// PathModifier rewrites a request path: either the whole path, or the
// prefix the route matched.
type PathModifier struct {
	// FullPath replaces the whole path.
	FullPath *string
	// PrefixMatch replaces the path prefix the route matched (the route's
	// Path must then be a Prefix match).
	PrefixMatch *string
}

// URLRewrite changes the request before it goes upstream.
type URLRewrite struct {
	Hostname *string
	Path     *PathModifier
}

// Redirect answers with a redirect.
type Redirect struct {
	Scheme   *string
	Hostname *string
	Path     *PathModifier
	Port     *uint32
	// StatusCode is 301 or 302 (and 303, 307, 308 where supported).
	StatusCode int
}

// DirectResponse answers from Envoy itself, e.g. 500 for a rule whose
// backends are all invalid.
type DirectResponse struct {
	Status uint32
	Body   string
}

// Backend is a weighted upstream of a route.
type Backend struct {
	// Cluster names a Cluster of the group; "" when the reference could not
	// be resolved.
	Cluster string
	Weight  uint32
}

// Mirror copies requests to a cluster, ignoring the answers.
type Mirror struct {
	Cluster string
	// Percent of requests mirrored, 0-100; 100 when not set.
	Percent float64
}

// Cluster is an upstream Service port.
type Cluster struct {
	// Name is unique in the group: "<namespace>/<service>/<port>".
	Name string
	// Namespace and Service name the Service; Port is its port number and
	// PortName that port's name, which its EndpointSlices use.
	Namespace, Service string
	Port               int32
	PortName           string
	// Protocol is HTTP (HTTP/1.1) or HTTP2 (cleartext HTTP/2, for gRPC or
	// appProtocol kubernetes.io/h2c).
	Protocol Protocol
}

// Endpoint is one ready address of a cluster.
type Endpoint struct {
	Address string
	Port    uint32
	// Serving but terminating endpoints are kept with lower priority so
	// connections drain.
	Terminating bool
}

// Endpoints are the endpoints of each cluster, by cluster name.
type Endpoints map[string][]Endpoint
