package server

import (
	"fmt"
	"testing"
	"time"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	router "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/berthnet/berth/xds/pki"
)

// config is one group's Envoy configuration, built by hand: a listener whose routes come
// over RDS, a route to an EDS cluster with `backends` backends, and a TLS secret. Every name
// starts with prefix so tests can tell groups apart.
type config struct {
	prefix   string
	backends int
	// endpointIP is the last octet of every backend's endpoint address: change it to
	// change only EDS.
	endpointIP int
	// routePath changes only RDS.
	routePath string
}

func adsSource() *core.ConfigSource {
	return &core.ConfigSource{
		ResourceApiVersion:    core.ApiVersion_V3,
		ConfigSourceSpecifier: &core.ConfigSource_Ads{Ads: &core.AggregatedConfigSource{}},
	}
}

func (c config) clusterName(i int) string { return fmt.Sprintf("%s-backend-%d", c.prefix, i) }
func (c config) routeName() string        { return c.prefix + "-routes" }
func (c config) listenerName() string     { return c.prefix + "-http" }
func (c config) secretName() string       { return c.prefix + "-cert" }

func (c config) clusters() []types.Resource {
	var out []types.Resource
	for i := range c.backends {
		out = append(out, &cluster.Cluster{
			Name:                 c.clusterName(i),
			ConnectTimeout:       durationpb.New(time.Second),
			ClusterDiscoveryType: &cluster.Cluster_Type{Type: cluster.Cluster_EDS},
			EdsClusterConfig:     &cluster.Cluster_EdsClusterConfig{EdsConfig: adsSource()},
		})
	}
	return out
}

func (c config) endpoints() []types.Resource {
	var out []types.Resource
	for i := range c.backends {
		out = append(out, &endpoint.ClusterLoadAssignment{
			ClusterName: c.clusterName(i),
			Endpoints: []*endpoint.LocalityLbEndpoints{{
				LbEndpoints: []*endpoint.LbEndpoint{{
					HostIdentifier: &endpoint.LbEndpoint_Endpoint{Endpoint: &endpoint.Endpoint{
						Address: socketAddress(fmt.Sprintf("10.%d.%d.%d", i/250, i%250, c.endpointIP), 8080),
					}},
				}},
			}},
		})
	}
	return out
}

func socketAddress(ip string, port uint32) *core.Address {
	return &core.Address{Address: &core.Address_SocketAddress{SocketAddress: &core.SocketAddress{
		Address: ip, PortSpecifier: &core.SocketAddress_PortValue{PortValue: port},
	}}}
}

func (c config) routes() []types.Resource {
	path := c.routePath
	if path == "" {
		path = "/"
	}
	var routes []*route.Route
	for i := range c.backends {
		routes = append(routes, &route.Route{
			Match: &route.RouteMatch{PathSpecifier: &route.RouteMatch_Prefix{Prefix: fmt.Sprintf("%s%d", path, i)}},
			Action: &route.Route_Route{Route: &route.RouteAction{
				ClusterSpecifier: &route.RouteAction_Cluster{Cluster: c.clusterName(i)},
			}},
		})
	}
	return []types.Resource{&route.RouteConfiguration{
		Name:         c.routeName(),
		VirtualHosts: []*route.VirtualHost{{Name: c.prefix, Domains: []string{"*"}, Routes: routes}},
	}}
}

func (c config) listeners(t testing.TB) []types.Resource {
	t.Helper()
	routerAny, err := anypb.New(&router.Router{})
	if err != nil {
		t.Fatal(err)
	}
	manager := &hcm.HttpConnectionManager{
		StatPrefix: c.prefix,
		RouteSpecifier: &hcm.HttpConnectionManager_Rds{Rds: &hcm.Rds{
			RouteConfigName: c.routeName(), ConfigSource: adsSource(),
		}},
		HttpFilters: []*hcm.HttpFilter{{Name: "envoy.filters.http.router", ConfigType: &hcm.HttpFilter_TypedConfig{TypedConfig: routerAny}}},
	}
	managerAny, err := anypb.New(manager)
	if err != nil {
		t.Fatal(err)
	}
	return []types.Resource{&listener.Listener{
		Name:    c.listenerName(),
		Address: socketAddress("0.0.0.0", 8080),
		FilterChains: []*listener.FilterChain{{Filters: []*listener.Filter{{
			Name: "envoy.filters.network.http_connection_manager", ConfigType: &listener.Filter_TypedConfig{TypedConfig: managerAny},
		}}}},
	}}
}

func (c config) secrets(t testing.TB) []types.Resource {
	t.Helper()
	ca, err := pki.NewCA(c.prefix+"-ca", time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, err := ca.KeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	return []types.Resource{&tlsv3.Secret{
		Name: c.secretName(),
		Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: &tlsv3.TlsCertificate{
			CertificateChain: &core.DataSource{Specifier: &core.DataSource_InlineBytes{InlineBytes: ca.CertPEM()}},
			PrivateKey:       &core.DataSource{Specifier: &core.DataSource_InlineBytes{InlineBytes: keyPEM}},
		}},
	}}
}

func (c config) all(t testing.TB) map[resource.Type][]types.Resource {
	return map[resource.Type][]types.Resource{
		resource.ClusterType:  c.clusters(),
		resource.EndpointType: c.endpoints(),
		resource.RouteType:    c.routes(),
		resource.ListenerType: c.listeners(t),
		resource.SecretType:   c.secrets(t),
	}
}
