package translator

import (
	"fmt"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/berthnet/berth/xds/ir"
)

// connectTimeout bounds the TCP (and TLS) handshake to an upstream
// endpoint; inside a cluster network a slower one is a dead endpoint.
const connectTimeout = 5 * time.Second

// httpProtocolOptionsName is the key Envoy reads upstream HTTP options
// from in typed_extension_protocol_options.
const httpProtocolOptionsName = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"

func buildClusters(cs []*ir.Cluster, m *memoTable) ([]types.Resource, error) {
	out := make([]types.Resource, 0, len(cs))
	for _, c := range cs {
		ec, err := m.cluster(c)
		if err != nil {
			return nil, fmt.Errorf("cluster %s: %w", c.Name, err)
		}
		out = append(out, ec)
	}
	return out, nil
}

// buildCluster is an EDS cluster whose endpoints come over ADS (by the
// cluster's own name), balanced to the least loaded of two random
// endpoints; HTTP2 clusters speak cleartext HTTP/2 (prior knowledge).
func buildCluster(c *ir.Cluster) (*clusterv3.Cluster, error) {
	ec := &clusterv3.Cluster{
		Name:                 c.Name,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
		EdsClusterConfig:     &clusterv3.Cluster_EdsClusterConfig{EdsConfig: adsConfigSource()},
		ConnectTimeout:       durationpb.New(connectTimeout),
		LbPolicy:             clusterv3.Cluster_LEAST_REQUEST,
	}
	if c.Protocol == ir.HTTP2 {
		opts, err := marshalAny(&httpv3.HttpProtocolOptions{
			UpstreamProtocolOptions: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_{
				ExplicitHttpConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig{
					ProtocolConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions{
						Http2ProtocolOptions: &corev3.Http2ProtocolOptions{},
					},
				},
			},
		})
		if err != nil {
			return nil, err
		}
		ec.TypedExtensionProtocolOptions = map[string]*anypb.Any{httpProtocolOptionsName: opts}
	}
	return ec, nil
}
