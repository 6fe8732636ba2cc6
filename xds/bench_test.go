package xds_test

import (
	"fmt"
	"testing"
	"time"

	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/berthnet/berth/xds"
	"github.com/berthnet/berth/xds/benchgen"
	"github.com/berthnet/berth/xds/gatewayapi"
	"github.com/berthnet/berth/xds/ir"
	"github.com/berthnet/berth/xds/translator"
)

// BenchmarkPipeline times a full translation of the benchmark input (xds/benchgen) at 1,000
// and 5,000 routes: everything the controller does per full sync before it
// hands a group to the server. Stage 1 is gatewayapi.Translate (Kubernetes
// resources -> IR and status); stage 2 is, per group, gatewayapi.Endpoints
// and Build (IR -> every xDS resource, endpoints included). Figures:
//
//   - ms-stage1, ms-stage2, ms-total per translation;
//   - ns/route: the total per HTTPRoute, flat across sizes when translation
//     grows linearly;
//   - ms-validate: ValidateAll of every emitted resource, which the
//     server's Set does before serving (outside the total: it is the
//     serving step, and the one place top-level resources are validated);
//   - total/deepcopy: the total against a baseline in the same run, a deep
//     copy of the input objects (the least any full pass over them costs).
func BenchmarkPipeline(b *testing.B) {
	for _, n := range []int{1000, 5000} {
		b.Run(fmt.Sprintf("routes=%d", n), func(b *testing.B) {
			in := benchgen.Generate(n)
			res := &gatewayapi.Resources{
				GatewayClasses: []gwv1.GatewayClass{in.GatewayClass},
				Gateways:       []gwv1.Gateway{in.Gateway},
				HTTPRoutes:     in.HTTPRoutes,
				Namespaces:     in.Namespaces,
				Services:       in.Services,
			}
			var stage1, stage2, validate, deepcopy time.Duration
			b.ReportAllocs()
			for b.Loop() {
				start := time.Now()
				out := gatewayapi.Translate(res, gatewayapi.Options{})
				mid := time.Now()
				var all []translator.Resources
				for _, g := range out.Groups {
					r, err := xds.Build(g, gatewayapi.Endpoints(g.Clusters, in.EndpointSlices))
					if err != nil {
						b.Fatal(err)
					}
					all = append(all, r)
				}
				end := time.Now()
				stage1 += mid.Sub(start)
				stage2 += end.Sub(mid)

				b.StopTimer()
				if len(all) != 1 || len(all[0][resourcev3.RouteType]) != 1 || len(all[0][resourcev3.ClusterType]) != n {
					b.Fatalf("unexpected output: %d groups", len(all))
				}
				t := time.Now()
				for _, r := range all {
					if err := validateAll(r); err != nil {
						b.Fatal(err)
					}
				}
				validate += time.Since(t)
				t = time.Now()
				copyInput(in)
				deepcopy += time.Since(t)
				b.StartTimer()
			}
			per := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / float64(b.N) }
			total := per(stage1) + per(stage2)
			b.ReportMetric(per(stage1)/1e6, "ms-stage1")
			b.ReportMetric(per(stage2)/1e6, "ms-stage2")
			b.ReportMetric(total/1e6, "ms-total")
			b.ReportMetric(total/float64(n), "ns/route")
			b.ReportMetric(per(validate)/1e6, "ms-validate")
			b.ReportMetric(total/per(deepcopy), "total/deepcopy")
		})
	}
}

// copyInput deep-copies every object of the input: the baseline.
func copyInput(in *benchgen.Input) {
	_ = in.GatewayClass.DeepCopy()
	_ = in.Gateway.DeepCopy()
	for i := range in.HTTPRoutes {
		_ = in.HTTPRoutes[i].DeepCopy()
	}
	for i := range in.Services {
		_ = in.Services[i].DeepCopy()
	}
	for i := range in.EndpointSlices {
		_ = in.EndpointSlices[i].DeepCopy()
	}
}

// validateAll runs every resource's ValidateAll, as the server does.
func validateAll(res translator.Resources) error {
	for typ, list := range res {
		for _, r := range list {
			if v, ok := r.(interface{ ValidateAll() error }); ok {
				if err := v.ValidateAll(); err != nil {
					return fmt.Errorf("%s: %w", typ, err)
				}
			}
		}
	}
	return nil
}

// BenchmarkRouteChange times what the controller does when one HTTPRoute
// of 5,000 changes: both stages with their Memos (gatewayapi.Memo,
// translator.Memo) carried from change to change. Figures: ms-stage1 and
// ms-stage2 per change, and change/full, the two stages against a full
// translation of the same input in the same run.
func BenchmarkRouteChange(b *testing.B) {
	const n = 5000
	in := benchgen.Generate(n)
	res := benchgen.Resources(in)
	each(res, func(o client.Object) { o.SetResourceVersion("1") })
	var memo gatewayapi.Memo
	stage2 := translator.Memo{Validated: true} // as the controller: stage 1 validated
	both := func(translate func(*gatewayapi.Resources, gatewayapi.Options) *gatewayapi.Result, build func(*ir.Group) (translator.Resources, error)) (time.Duration, time.Duration) {
		start := time.Now()
		out := translate(res, gatewayapi.Options{})
		mid := time.Now()
		if _, err := build(xds.BindPorts(out.Groups[0])); err != nil {
			b.Fatal(err)
		}
		return mid.Sub(start), time.Since(mid)
	}
	full1, full2 := both(gatewayapi.Translate, translator.Translate)
	both(memo.Translate, stage2.Translate)
	var stage1, stage2d time.Duration
	version := 1
	for b.Loop() {
		version++
		i := version * 7919 % n
		r := res.HTTPRoutes[i].DeepCopy()
		v := fmt.Sprintf("/api/v%d-%d", i, version)
		r.Spec.Rules[0].Matches[0].Path.Value = &v
		r.ResourceVersion = fmt.Sprint(version)
		res.HTTPRoutes[i] = *r
		s1, s2 := both(memo.Translate, stage2.Translate)
		stage1 += s1
		stage2d += s2
	}
	per := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / float64(b.N) }
	b.ReportMetric(per(stage1)/1e6, "ms-stage1")
	b.ReportMetric(per(stage2d)/1e6, "ms-stage2")
	b.ReportMetric((per(stage1)+per(stage2d))/float64((full1+full2).Nanoseconds()), "change/full")
}
