package translator

import (
	"fmt"
	"sort"
	"strings"

	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/config/accesslog/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	streamv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/stream/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	tlsinspectorv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/tls_inspector/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/berthnet/berth/xds/ir"
)

// Well-known extension names of the filters and sockets used here.
const (
	hcmFilterName          = "envoy.filters.network.http_connection_manager"
	routerFilterName       = "envoy.filters.http.router"
	tlsInspectorName       = "envoy.filters.listener.tls_inspector"
	tlsTransportSocketName = "envoy.transport_sockets.tls"
	stdoutAccessLogName    = "envoy.access_loggers.stdout"
)

// port is every IR listener bound to one port: they become one Envoy
// listener.
type port struct {
	port uint32
	tls  bool
	// listeners, most specific hostname first (see moreSpecific).
	listeners []*ir.HTTPListener
}

// listenerName is the Envoy listener of a port; for plain HTTP it is also
// the name of the port's one route configuration.
func (p *port) listenerName() string {
	if p.tls {
		return fmt.Sprintf("https-%d", p.port)
	}
	return fmt.Sprintf("http-%d", p.port)
}

// groupPorts merges the IR listeners that share a port. A port cannot mix
// plain HTTP and HTTPS, and on an HTTPS port two listeners cannot serve the
// same hostname (their filter chains would have the same match): the first
// stage marks such listeners conflicted; reaching here they are an error.
func groupPorts(ls []*ir.HTTPListener) ([]*port, error) {
	byPort := map[uint32]*port{}
	for _, l := range ls {
		p := byPort[l.Port]
		if p == nil {
			p = &port{port: l.Port, tls: l.TLS != nil}
			byPort[l.Port] = p
		}
		if p.tls != (l.TLS != nil) {
			return nil, fmt.Errorf("port %d: listener %s mixes plain HTTP and HTTPS with listener %s",
				l.Port, l.Name, p.listeners[0].Name)
		}
		p.listeners = append(p.listeners, l)
	}
	ports := make([]*port, 0, len(byPort))
	for _, p := range byPort {
		sort.Slice(p.listeners, func(i, j int) bool {
			a, b := p.listeners[i], p.listeners[j]
			if a.Hostname != b.Hostname {
				return moreSpecific(a.Hostname, b.Hostname)
			}
			return a.Name < b.Name
		})
		if p.tls {
			for i := 1; i < len(p.listeners); i++ {
				if a, b := p.listeners[i-1], p.listeners[i]; a.Hostname == b.Hostname {
					return nil, fmt.Errorf("port %d: HTTPS listeners %s and %s both serve hostname %q",
						p.port, a.Name, b.Name, a.Hostname)
				}
			}
		}
		ports = append(ports, p)
	}
	sort.Slice(ports, func(i, j int) bool { return ports[i].port < ports[j].port })
	return ports, nil
}

// moreSpecific orders hostnames as the Gateway API matches listeners: an
// exact hostname before any wildcard, a longer wildcard before a shorter
// one, and "" (any host) last.
func moreSpecific(a, b string) bool {
	rank := func(h string) int {
		switch {
		case h == "":
			return 2
		case strings.HasPrefix(h, "*"):
			return 1
		}
		return 0
	}
	if ra, rb := rank(a), rank(b); ra != rb {
		return ra < rb
	}
	if len(a) != len(b) {
		return len(a) > len(b)
	}
	return a < b
}

// buildPort makes the Envoy listener of a port and the route
// configurations its connection managers fetch by RDS.
func buildPort(p *port, m *memoTable) (*listenerv3.Listener, []*routev3.RouteConfiguration, error) {
	l := &listenerv3.Listener{
		Name:    p.listenerName(),
		Address: socketAddress("0.0.0.0", p.port),
		// IPv6 on its own socket (IPV6_V6ONLY, Envoy's default for ::),
		// so IPv4 clients keep plain IPv4 remote addresses.
		AdditionalAddresses: []*listenerv3.AdditionalAddress{{Address: socketAddress("::", p.port)}},
	}
	if !p.tls {
		rc := m.routeConfig(p.listenerName(), p.listeners)
		hcm, err := connectionManager(p.listenerName(), rc.Name)
		if err != nil {
			return nil, nil, err
		}
		l.FilterChains = []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{hcm}}}
		return l, []*routev3.RouteConfiguration{rc}, nil
	}

	inspector, err := marshalAny(&tlsinspectorv3.TlsInspector{})
	if err != nil {
		return nil, nil, err
	}
	l.ListenerFilters = []*listenerv3.ListenerFilter{{
		Name:       tlsInspectorName,
		ConfigType: &listenerv3.ListenerFilter_TypedConfig{TypedConfig: inspector},
	}}
	rcs := make([]*routev3.RouteConfiguration, 0, len(p.listeners))
	for _, il := range p.listeners {
		chain, rc, err := tlsFilterChain(p.listenerName(), il, m)
		if err != nil {
			return nil, nil, fmt.Errorf("listener %s: %w", il.Name, err)
		}
		l.FilterChains = append(l.FilterChains, chain)
		rcs = append(rcs, rc)
	}
	return l, rcs, nil
}

// tlsFilterChain is one HTTPS listener of the IR: a filter chain chosen by
// SNI (any SNI, or none, when the listener has no hostname) that
// terminates TLS with the listener's certificates, fetched by SDS, and
// routes with its own route configuration, named after the IR listener.
func tlsFilterChain(statPrefix string, l *ir.HTTPListener, m *memoTable) (*listenerv3.FilterChain, *routev3.RouteConfiguration, error) {
	rc := m.routeConfig(l.Name, []*ir.HTTPListener{l})
	hcm, err := connectionManager(statPrefix, rc.Name)
	if err != nil {
		return nil, nil, err
	}
	tlsCtx := &tlsv3.DownstreamTlsContext{
		CommonTlsContext: &tlsv3.CommonTlsContext{
			AlpnProtocols: []string{"h2", "http/1.1"},
		},
	}
	for _, c := range l.TLS.Certificates {
		tlsCtx.CommonTlsContext.TlsCertificateSdsSecretConfigs = append(
			tlsCtx.CommonTlsContext.TlsCertificateSdsSecretConfigs,
			&tlsv3.SdsSecretConfig{Name: c.Name, SdsConfig: adsConfigSource()})
	}
	tlsAny, err := marshalAny(tlsCtx)
	if err != nil {
		return nil, nil, err
	}
	chain := &listenerv3.FilterChain{
		Name:    l.Name,
		Filters: []*listenerv3.Filter{hcm},
		TransportSocket: &corev3.TransportSocket{
			Name:       tlsTransportSocketName,
			ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: tlsAny},
		},
	}
	if l.Hostname != "" {
		chain.FilterChainMatch = &listenerv3.FilterChainMatch{ServerNames: []string{l.Hostname}}
	}
	return chain, rc, nil
}

// connectionManager is the HTTP connection manager filter that routes with
// the named route configuration, fetched by RDS over ADS.
func connectionManager(statPrefix, routeConfig string) (*listenerv3.Filter, error) {
	router, err := marshalAny(&routerv3.Router{})
	if err != nil {
		return nil, err
	}
	stdout, err := marshalAny(&streamv3.StdoutAccessLog{})
	if err != nil {
		return nil, err
	}
	hcm := &hcmv3.HttpConnectionManager{
		StatPrefix: statPrefix,
		CodecType:  hcmv3.HttpConnectionManager_AUTO,
		RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{
			ConfigSource:    adsConfigSource(),
			RouteConfigName: routeConfig,
		}},
		HttpFilters: []*hcmv3.HttpFilter{{
			Name:       routerFilterName,
			ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: router},
		}},
		// Envoy is the edge: the client is the peer, not an
		// X-Forwarded-For a client could forge.
		UseRemoteAddress: wrapperspb.Bool(true),
		NormalizePath:    wrapperspb.Bool(true),
		MergeSlashes:     true,
		UpgradeConfigs:   []*hcmv3.HttpConnectionManager_UpgradeConfig{{UpgradeType: "websocket"}},
		AccessLog: []*accesslogv3.AccessLog{{
			Name:       stdoutAccessLogName,
			ConfigType: &accesslogv3.AccessLog_TypedConfig{TypedConfig: stdout},
		}},
	}
	hcmAny, err := marshalAny(hcm)
	if err != nil {
		return nil, err
	}
	return &listenerv3.Filter{
		Name:       hcmFilterName,
		ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: hcmAny},
	}, nil
}

// adsConfigSource says "over the ADS stream this Envoy already has".
func adsConfigSource() *corev3.ConfigSource {
	return &corev3.ConfigSource{
		ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}},
		ResourceApiVersion:    corev3.ApiVersion_V3,
	}
}

func socketAddress(ip string, port uint32) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Protocol:      corev3.SocketAddress_TCP,
		Address:       ip,
		PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
	}}}
}
