package gatewayapi_test

import (
	"fmt"
	"testing"

	"github.com/berthnet/berth/xds/benchgen"
	"github.com/berthnet/berth/xds/gatewayapi"
)

// BenchmarkTranslate times Translate on the benchmark input (xds/benchgen) at 1,000 and
// 5,000 routes, next to a baseline in the same run (deep-copying the same
// input: the least any full pass over it costs). Each reports ns/route, so
// linear growth shows as a flat figure across sizes; compare Translate's
// with the baseline's rather than with an absolute number.
func BenchmarkTranslate(b *testing.B) {
	for _, n := range []int{1000, 5000} {
		in := benchgen.Generate(n)
		res := benchgen.Resources(in)
		b.Run(fmt.Sprintf("baseline-deepcopy/routes=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				for i := range res.HTTPRoutes {
					_ = res.HTTPRoutes[i].DeepCopy()
				}
				for i := range res.Services {
					_ = res.Services[i].DeepCopy()
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/route")
		})
		b.Run(fmt.Sprintf("translate/routes=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				out := gatewayapi.Translate(res, gatewayapi.Options{})
				if len(out.Groups) != 1 || len(out.Groups[0].HTTP[0].Routes) != 2*n {
					b.Fatalf("unexpected output: %d groups", len(out.Groups))
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/route")
		})
		b.Run(fmt.Sprintf("endpoints/routes=%d", n), func(b *testing.B) {
			clusters := gatewayapi.Translate(res, gatewayapi.Options{}).Groups[0].Clusters
			b.ReportAllocs()
			for b.Loop() {
				gatewayapi.Endpoints(clusters, in.EndpointSlices)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/route")
		})
	}
}
