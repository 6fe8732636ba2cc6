package server

import (
	"context"
	"fmt"
	"testing"
	"time"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
)

// BenchmarkEndpointPush measures one endpoint change until a connected client has the new
// EDS response, with 1,000 clusters. The cheap path (SetTypes with only the
// ClusterLoadAssignments) is reported as eds-ns/op, against the baseline of the same
// change made by a full Set of an unchanged-size configuration (every type validated and
// hashed again, only EDS pushed) as full-ns/op; eds/full is their ratio.
func BenchmarkEndpointPush(b *testing.B) {
	const backends = 1000
	e := newEnv(b)
	ctx := context.Background()
	cfg := config{prefix: "a", backends: backends, endpointIP: 1}
	all := cfg.all(b)
	if err := e.srv.Set(ctx, groupA, "v0", all); err != nil {
		b.Fatal(err)
	}
	conn, _ := e.dial(groupA)
	str, err := discovery.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(e.ctx)
	if err != nil {
		b.Fatal(err)
	}
	// One client subscribed to every type, ACKing everything, as an Envoy is.
	first := true
	ack := func(r *discovery.DiscoveryResponse) {
		if err := str.Send(&discovery.DiscoveryRequest{TypeUrl: r.GetTypeUrl(), VersionInfo: r.GetVersionInfo(), ResponseNonce: r.GetNonce()}); err != nil {
			b.Fatal(err)
		}
	}
	for _, typeURL := range []string{resource.ClusterType, resource.EndpointType, resource.ListenerType, resource.RouteType} {
		req := &discovery.DiscoveryRequest{TypeUrl: typeURL}
		if first {
			req.Node, first = node("envoy-1", groupA), false
		}
		if err := str.Send(req); err != nil {
			b.Fatal(err)
		}
		r, err := within(b, "initial", str.Recv)
		if err != nil {
			b.Fatal(err)
		}
		ack(r)
	}
	// untilEDS receives until the EDS response of version, ACKing all on the way.
	untilEDS := func(version string) {
		for {
			r, err := str.Recv()
			if err != nil {
				b.Fatal(err)
			}
			ack(r)
			if r.GetTypeUrl() == resource.EndpointType && r.GetVersionInfo() == version {
				return
			}
		}
	}
	n := 0
	change := func() []types.Resource {
		n++
		cfg.endpointIP = n%200 + 2
		return cfg.endpoints()
	}
	var eds, full time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		v := fmt.Sprintf("e%d", i)
		eps := change()
		start := time.Now()
		if err := e.srv.SetTypes(ctx, groupA, v, map[resource.Type][]types.Resource{resource.EndpointType: eps}); err != nil {
			b.Fatal(err)
		}
		untilEDS(v)
		eds += time.Since(start)

		v = fmt.Sprintf("f%d", i)
		all[resource.EndpointType] = change()
		start = time.Now()
		if err := e.srv.Set(ctx, groupA, v, all); err != nil {
			b.Fatal(err)
		}
		untilEDS(v)
		full += time.Since(start)
	}
	b.StopTimer()
	b.ReportMetric(float64(eds.Nanoseconds())/float64(b.N), "eds-ns/op")
	b.ReportMetric(float64(full.Nanoseconds())/float64(b.N), "full-ns/op")
	b.ReportMetric(float64(eds)/float64(full), "eds/full")
}
