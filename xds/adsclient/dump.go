package adsclient

import (
	"context"
	"fmt"
	"sort"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	hcm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// Config is what a node group is served, by type URL, each list sorted by
// resource name.
type Config map[string][]proto.Message

// Order is the order types are fetched and printed in.
var Order = []string{resourcev3.ListenerType, resourcev3.RouteType, resourcev3.ClusterType, resourcev3.EndpointType, resourcev3.SecretType}

// Versions are the versions of a Config, by type URL.
type Versions map[string]string

// Fetch takes what an Envoy of the client's node group would: listeners
// and clusters, then the route configurations, endpoints and secrets they
// name, ACKing each response.
func (c *Client) Fetch(ctx context.Context) (Config, Versions, error) {
	out, versions := Config{}, Versions{}
	get := func(typeURL string, names []string) error {
		if err := c.Subscribe(typeURL, names); err != nil {
			return err
		}
		resp, err := c.Next(ctx, typeURL)
		if err != nil {
			return err
		}
		msgs, err := decode(resp)
		if err != nil {
			return err
		}
		out[typeURL], versions[typeURL] = msgs, resp.VersionInfo
		return c.Ack(resp)
	}
	for _, t := range []string{resourcev3.ClusterType, resourcev3.ListenerType} {
		if err := get(t, nil); err != nil {
			return nil, nil, err
		}
	}
	var eds, rds, sds []string
	for _, m := range out[resourcev3.ClusterType] {
		if cl := m.(*cluster.Cluster); cl.GetType() == cluster.Cluster_EDS {
			name := cl.GetEdsClusterConfig().GetServiceName()
			if name == "" {
				name = cl.GetName()
			}
			eds = append(eds, name)
		}
	}
	for _, m := range out[resourcev3.ListenerType] {
		r, s, err := listenerRefs(m.(*listener.Listener))
		if err != nil {
			return nil, nil, err
		}
		rds, sds = append(rds, r...), append(sds, s...)
	}
	for _, t := range []struct {
		url   string
		names []string
	}{{resourcev3.EndpointType, eds}, {resourcev3.RouteType, rds}, {resourcev3.SecretType, sds}} {
		if len(t.names) == 0 {
			continue
		}
		if err := get(t.url, uniq(t.names)); err != nil {
			return nil, nil, err
		}
	}
	return out, versions, nil
}

func decode(resp *discovery.DiscoveryResponse) ([]proto.Message, error) {
	var msgs []proto.Message
	for _, a := range resp.Resources {
		m, err := anypb.UnmarshalNew(a, proto.UnmarshalOptions{})
		if err != nil {
			return nil, fmt.Errorf("%s: %w", resp.TypeUrl, err)
		}
		msgs = append(msgs, m)
	}
	sort.Slice(msgs, func(i, j int) bool { return resourceName(msgs[i]) < resourceName(msgs[j]) })
	return msgs, nil
}

func resourceName(m proto.Message) string {
	if n, ok := m.(interface{ GetName() string }); ok && n.GetName() != "" {
		return n.GetName()
	}
	if n, ok := m.(interface{ GetClusterName() string }); ok {
		return n.GetClusterName()
	}
	return ""
}

// listenerRefs returns the route configurations and secrets a listener
// fetches by RDS and SDS.
func listenerRefs(l *listener.Listener) (rds, sds []string, err error) {
	for _, fc := range l.GetFilterChains() {
		if ts := fc.GetTransportSocket(); ts != nil && ts.GetTypedConfig() != nil {
			var dtc tlsv3.DownstreamTlsContext
			if err := ts.GetTypedConfig().UnmarshalTo(&dtc); err == nil {
				for _, s := range dtc.GetCommonTlsContext().GetTlsCertificateSdsSecretConfigs() {
					sds = append(sds, s.GetName())
				}
			}
		}
		for _, f := range fc.GetFilters() {
			var m hcm.HttpConnectionManager
			if f.GetTypedConfig() == nil || f.GetTypedConfig().UnmarshalTo(&m) != nil {
				continue
			}
			if r := m.GetRds(); r != nil {
				rds = append(rds, r.GetRouteConfigName())
			}
		}
	}
	return rds, sds, nil
}

func uniq(s []string) []string {
	sort.Strings(s)
	out := s[:0]
	for i, v := range s {
		if i == 0 || v != s[i-1] {
			out = append(out, v)
		}
	}
	return out
}
