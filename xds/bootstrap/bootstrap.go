// Package bootstrap writes the Envoy bootstrap for one node group: who the Envoy is (node
// id and cluster = its group), where its configuration comes from (ADS over gRPC to the
// controller's xDS Service, mutual TLS with certificate files mounted from a Secret), an
// admin interface on loopback only, and a readiness listener for the kubelet.
package bootstrap

import (
	"errors"
	"fmt"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	healthcheckv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/health_check/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	"sigs.k8s.io/yaml"

	"github.com/berthnet/berth/xds/pki"
)

// Defaults for Options.
const (
	DefaultXDSPort   = 18000
	DefaultAdminPort = 19000
	DefaultReadyPort = 19001
	// DefaultCertDir is where the Envoy Deployment mounts the group's client certificate
	// Secret (type kubernetes.io/tls with ca.crt).
	DefaultCertDir = "/etc/berth/xds"
	// ReadyPath is what the kubelet's readiness probe asks on ReadyPort.
	ReadyPath = "/ready"
	// XDSCluster is the name of the static cluster that reaches the xDS server.
	XDSCluster = "berth-xds"
	// ReadyListener is the name of the static readiness listener.
	ReadyListener = "berth-ready"
)

// Options describe one node group's bootstrap.
type Options struct {
	// Group is the node group: the node's cluster, and the group in its client certificate.
	Group string
	// NodeID is the node id in the file. Every replica of a Deployment shares the file,
	// so the Deployment passes --service-node $(POD_NAME), which overrides it; default
	// Group.
	NodeID string
	// XDSHost is the DNS name (or IP) of the controller's xDS Service. Required.
	XDSHost string
	// XDSPort is the xDS Service's port; default DefaultXDSPort.
	XDSPort uint32
	// ServerName is the name the xDS server's certificate must carry (SNI and SAN check);
	// default XDSHost.
	ServerName string
	// CertFile, KeyFile and CAFile are the client certificate, its key and the CA bundle
	// that verifies the server; default tls.crt, tls.key and ca.crt under DefaultCertDir.
	CertFile, KeyFile, CAFile string
	// AdminPort is the admin interface's port, bound to 127.0.0.1 only.
	AdminPort uint32
	// ReadyPort serves ReadyPath on all addresses for the readiness probe.
	ReadyPort uint32
}

func (o Options) withDefaults() (Options, error) {
	if err := pki.ValidateGroup(o.Group); err != nil {
		return o, fmt.Errorf("bootstrap: %w", err)
	}
	if o.XDSHost == "" {
		return o, errors.New("bootstrap: XDSHost (the xDS Service's DNS name) is empty")
	}
	def := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	defPort := func(p *uint32, v uint32) {
		if *p == 0 {
			*p = v
		}
	}
	def(&o.NodeID, o.Group)
	def(&o.ServerName, o.XDSHost)
	def(&o.CertFile, DefaultCertDir+"/tls.crt")
	def(&o.KeyFile, DefaultCertDir+"/tls.key")
	def(&o.CAFile, DefaultCertDir+"/ca.crt")
	defPort(&o.XDSPort, DefaultXDSPort)
	defPort(&o.AdminPort, DefaultAdminPort)
	defPort(&o.ReadyPort, DefaultReadyPort)
	if o.AdminPort == o.ReadyPort {
		return o, fmt.Errorf("bootstrap: admin and readiness both on port %d", o.AdminPort)
	}
	return o, nil
}

// Build returns the bootstrap for o, validated by Envoy's proto rules (ValidateAll, on the
// bootstrap and on every typed config inside it).
func Build(o Options) (*bootstrapv3.Bootstrap, error) {
	o, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	xds, err := xdsCluster(o)
	if err != nil {
		return nil, err
	}
	ready, err := readyListener(o)
	if err != nil {
		return nil, err
	}
	ads := &corev3.ConfigSource{
		ResourceApiVersion:    corev3.ApiVersion_V3,
		ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}},
	}
	b := &bootstrapv3.Bootstrap{
		Node: &corev3.Node{Id: o.NodeID, Cluster: o.Group},
		DynamicResources: &bootstrapv3.Bootstrap_DynamicResources{
			AdsConfig: &corev3.ApiConfigSource{
				// Delta xDS: an endpoint change sends only the changed assignments.
				ApiType:             corev3.ApiConfigSource_DELTA_GRPC,
				TransportApiVersion: corev3.ApiVersion_V3,
				GrpcServices: []*corev3.GrpcService{{
					TargetSpecifier: &corev3.GrpcService_EnvoyGrpc_{EnvoyGrpc: &corev3.GrpcService_EnvoyGrpc{ClusterName: XDSCluster}},
				}},
				SetNodeOnFirstMessageOnly: true,
			},
			LdsConfig: ads,
			CdsConfig: ads,
		},
		StaticResources: &bootstrapv3.Bootstrap_StaticResources{
			Clusters:  []*clusterv3.Cluster{xds},
			Listeners: []*listenerv3.Listener{ready},
		},
		Admin: &bootstrapv3.Admin{Address: socket("127.0.0.1", o.AdminPort)},
	}
	if err := b.ValidateAll(); err != nil {
		return nil, fmt.Errorf("bootstrap for %s: %w", o.Group, err)
	}
	return b, nil
}

// YAML renders Build(o) as YAML with Envoy's field names, keys sorted: what the Envoy
// Deployment's ConfigMap holds.
func YAML(o Options) ([]byte, error) {
	b, err := Build(o)
	if err != nil {
		return nil, err
	}
	j, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(b)
	if err != nil {
		return nil, fmt.Errorf("bootstrap for %s: marshal: %w", o.Group, err)
	}
	out, err := yaml.JSONToYAML(j)
	if err != nil {
		return nil, fmt.Errorf("bootstrap for %s: yaml: %w", o.Group, err)
	}
	return out, nil
}

// Parse reads a bootstrap from YAML, strictly (unknown fields are errors), and validates
// it: the check that a file Envoy is given would load.
func Parse(data []byte) (*bootstrapv3.Bootstrap, error) {
	j, err := yaml.YAMLToJSON(data)
	if err != nil {
		return nil, fmt.Errorf("bootstrap yaml: %w", err)
	}
	b := &bootstrapv3.Bootstrap{}
	if err := protojson.Unmarshal(j, b); err != nil {
		return nil, fmt.Errorf("bootstrap: %w", err)
	}
	if err := b.ValidateAll(); err != nil {
		return nil, fmt.Errorf("bootstrap: %w", err)
	}
	return b, nil
}

func socket(addr string, port uint32) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address: addr, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
	}}}
}

// typed validates m and packs it.
func typed(m interface {
	proto.Message
	ValidateAll() error
}) (*anypb.Any, error) {
	if err := m.ValidateAll(); err != nil {
		return nil, fmt.Errorf("%s: %w", m.ProtoReflect().Descriptor().FullName(), err)
	}
	a, err := anypb.New(m)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", m.ProtoReflect().Descriptor().FullName(), err)
	}
	return a, nil
}

func file(path string) *corev3.DataSource {
	return &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: path}}
}

// xdsCluster reaches the xDS Service over HTTP/2 with mutual TLS: the client certificate
// from the mounted Secret, the server checked against the CA bundle and ServerName.
func xdsCluster(o Options) (*clusterv3.Cluster, error) {
	tlsCtx, err := typed(&tlsv3.UpstreamTlsContext{
		Sni: o.ServerName,
		CommonTlsContext: &tlsv3.CommonTlsContext{
			TlsParams:       &tlsv3.TlsParameters{TlsMinimumProtocolVersion: tlsv3.TlsParameters_TLSv1_3},
			AlpnProtocols:   []string{"h2"},
			TlsCertificates: []*tlsv3.TlsCertificate{{CertificateChain: file(o.CertFile), PrivateKey: file(o.KeyFile)}},
			ValidationContextType: &tlsv3.CommonTlsContext_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
				TrustedCa: file(o.CAFile),
				MatchTypedSubjectAltNames: []*tlsv3.SubjectAltNameMatcher{{
					SanType: tlsv3.SubjectAltNameMatcher_DNS,
					Matcher: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: o.ServerName}},
				}},
			}},
		},
	})
	if err != nil {
		return nil, fmt.Errorf("bootstrap xds cluster: %w", err)
	}
	h2, err := typed(&httpv3.HttpProtocolOptions{
		UpstreamProtocolOptions: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_{ExplicitHttpConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig{
			ProtocolConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions{Http2ProtocolOptions: &corev3.Http2ProtocolOptions{
				// Notice a dead controller (or a lost connection) within a minute, not at
				// the kernel's TCP timeout.
				ConnectionKeepalive: &corev3.KeepaliveSettings{
					Interval: durationpb.New(30 * time.Second),
					Timeout:  durationpb.New(10 * time.Second),
				},
			}},
		}},
	})
	if err != nil {
		return nil, fmt.Errorf("bootstrap xds cluster: %w", err)
	}
	return &clusterv3.Cluster{
		Name:                 XDSCluster,
		ConnectTimeout:       durationpb.New(5 * time.Second),
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STRICT_DNS},
		DnsLookupFamily:      clusterv3.Cluster_V4_PREFERRED,
		LoadAssignment: &endpointv3.ClusterLoadAssignment{
			ClusterName: XDSCluster,
			Endpoints: []*endpointv3.LocalityLbEndpoints{{LbEndpoints: []*endpointv3.LbEndpoint{{
				HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{Address: socket(o.XDSHost, o.XDSPort)}},
			}}}},
		},
		TypedExtensionProtocolOptions: map[string]*anypb.Any{"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": h2},
		TransportSocket: &corev3.TransportSocket{
			Name:       "envoy.transport_sockets.tls",
			ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: tlsCtx},
		},
	}, nil
}

// readyListener answers ReadyPath with 200 once Envoy has started its listeners, which it
// does after the first configuration arrived over xDS (or initial_fetch_timeout passed),
// and with 503 while it drains. The admin interface has /ready too, but it listens on
// loopback only, out of the kubelet's reach.
func readyListener(o Options) (*listenerv3.Listener, error) {
	hc, err := typed(&healthcheckv3.HealthCheck{
		PassThroughMode: wrapperspb.Bool(false),
		Headers: []*routev3.HeaderMatcher{{
			Name: ":path",
			HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: &matcherv3.StringMatcher{
				MatchPattern: &matcherv3.StringMatcher_Exact{Exact: ReadyPath},
			}},
		}},
	})
	if err != nil {
		return nil, fmt.Errorf("bootstrap readiness listener: %w", err)
	}
	router, err := typed(&routerv3.Router{})
	if err != nil {
		return nil, fmt.Errorf("bootstrap readiness listener: %w", err)
	}
	manager, err := typed(&hcmv3.HttpConnectionManager{
		StatPrefix:     ReadyListener,
		RouteSpecifier: &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: &routev3.RouteConfiguration{Name: ReadyListener}},
		HttpFilters: []*hcmv3.HttpFilter{
			{Name: "envoy.filters.http.health_check", ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: hc}},
			{Name: "envoy.filters.http.router", ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: router}},
		},
	})
	if err != nil {
		return nil, fmt.Errorf("bootstrap readiness listener: %w", err)
	}
	return &listenerv3.Listener{
		Name:    ReadyListener,
		Address: socket("0.0.0.0", o.ReadyPort),
		FilterChains: []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{{
			Name:       "envoy.filters.network.http_connection_manager",
			ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: manager},
		}}}},
	}, nil
}
